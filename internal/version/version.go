// Package version holds ferry's build version (set by the Makefile with -ldflags -X).
package version

// Version is the build's version, e.g. a git describe string.
var Version = "dev"
