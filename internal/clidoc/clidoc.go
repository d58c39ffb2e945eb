// Package clidoc writes the CLI reference (docs/cli) from the command trees and checks that
// the committed one is current: `go test ./cmd/... -run TestCLIReference -update` (make docs)
// regenerates it.
package clidoc

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// Generate renders root's tree as Markdown, one file per command (name → content).
func Generate(root *cobra.Command) (map[string][]byte, error) {
	root.DisableAutoGenTag = true
	dir, err := os.MkdirTemp("", "clidoc")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := doc.GenMarkdownTree(root, dir); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}

// Check compares the generated reference with the files in dir that belong to root (named
// after it); with update it rewrites them instead. It returns what differs.
func Check(root *cobra.Command, dir string, update bool) ([]string, error) {
	files, err := Generate(root)
	if err != nil {
		return nil, err
	}
	prefix := root.Name()
	var stale []string
	if update {
		old, _ := filepath.Glob(filepath.Join(dir, prefix+".md"))
		more, _ := filepath.Glob(filepath.Join(dir, prefix+"_*.md"))
		for _, f := range append(old, more...) {
			if err := os.Remove(f); err != nil {
				return nil, err
			}
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		for name, b := range files {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	for name, b := range files {
		have, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(have, b) {
			stale = append(stale, name)
		}
	}
	committed, _ := filepath.Glob(filepath.Join(dir, prefix+"_*.md"))
	for _, f := range committed {
		if _, ok := files[filepath.Base(f)]; !ok {
			stale = append(stale, filepath.Base(f)+" (no such command any more)")
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		return stale, fmt.Errorf("docs/cli is stale for %s: %s (run make docs)", prefix, strings.Join(stale, ", "))
	}
	return nil, nil
}
