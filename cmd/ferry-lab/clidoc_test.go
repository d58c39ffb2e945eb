package main

import (
	"flag"
	"testing"

	"github.com/ferry-project/ferry/internal/clidoc"
)

var update = flag.Bool("update", false, "rewrite docs/cli from the command tree")

// TestCLIReference: docs/cli is generated from this command tree and must match it.
func TestCLIReference(t *testing.T) {
	if _, err := clidoc.Check(newRoot(), "../../docs/cli", *update); err != nil {
		t.Fatal(err)
	}
}
