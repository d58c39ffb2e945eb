package units

import "testing"

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		in   string
		v    float64
		unit int64
	}{
		{"16M", 16, 1 << 20}, {" 1.5G ", 1.5, 1 << 30}, {"512KiB", 512, 1 << 10}, {"50MB", 50, 1 << 20},
		{"7", 7, 99}, {"7B", 7, 99}, {"2k", 2, 1 << 10},
	} {
		v, unit, err := Split(c.in, 99)
		if err != nil || v != c.v || unit != c.unit {
			t.Errorf("Split(%q) = %v, %d, %v; want %v, %d", c.in, v, unit, err, c.v, c.unit)
		}
	}
	for _, bad := range []string{"", "M", "ten", "1T"} {
		if _, _, err := Split(bad, 1); err == nil {
			t.Errorf("Split(%q) accepted", bad)
		}
	}
}
