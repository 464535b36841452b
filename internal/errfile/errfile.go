// Package errfile reads the error a test file expects, written as the file's leading comment:
// "# error: <first line>", then "# <next line>" for each further line.
package errfile

import (
	"os"
	"strings"
	"testing"
)

// Want returns the error the file at path expects.
func Want(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(l, "# ")
		if !ok {
			break
		}
		lines = append(lines, strings.TrimPrefix(rest, "error: "))
	}
	return strings.Join(lines, "\n")
}
