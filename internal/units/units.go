// Package units reads sizes written the way operators write them: 16M, 1.5G, 512KiB, 50MB.
package units

import (
	"strconv"
	"strings"
)

// Split reads a number with an optional unit K, M or G (powers of 1024; a trailing "iB" or "B"
// is accepted: KiB, MB, G…). It returns the number and the unit's bytes; without a unit, def.
// Callers check the number's range and multiply.
func Split(s string, def int64) (float64, int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "iB"), "B")
	unit := def
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k', 'K':
			unit, t = 1<<10, t[:n-1]
		case 'm', 'M':
			unit, t = 1<<20, t[:n-1]
		case 'g', 'G':
			unit, t = 1<<30, t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	return v, unit, err
}
