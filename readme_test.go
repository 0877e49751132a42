package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"testing"
)

// TestREADMEListsEveryFlag keeps the README's configuration table true: every
// server flag has a row, and every row names a real flag.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `--([a-z-]+)` \\| `(HERALD_[A-Z_]+)`").FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = true
	}
	fs, _, err := configFlags("serve", func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !rows[f.Name] {
			t.Errorf("README configuration table has no row for --%s", f.Name)
		}
		delete(rows, f.Name)
	})
	for name := range rows {
		t.Errorf("README documents --%s, which the server does not have", name)
	}
}
