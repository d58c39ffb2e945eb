//go:build !failpoints

// Package failpoint injects faults into test and lab builds only; in this (product) build every
// Inject does nothing.
package failpoint

import "errors"

// Enabled reports whether this build honours failpoints.
const Enabled = false

// ErrCorrupt is never returned in product builds.
var ErrCorrupt = errors.New("failpoint: corrupt")

// ErrStop is never returned in product builds.
var ErrStop = errors.New("failpoint: stop")

// Inject does nothing in product builds.
func Inject(string) error { return nil }
