//go:build !failpoints

// Package failpoint injects faults into test and lab builds only; in this (product) build every
// Inject does nothing.
package failpoint

// Enabled reports whether this build honours failpoints.
const Enabled = false

// Inject does nothing in product builds.
func Inject(string) error { return nil }
