package wire

import (
	"fmt"
	"regexp"

	"github.com/ferry-project/ferry/internal/errdefs"
)

var migrationIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{7,63}$`)

// ValidMigrationID checks a migration id: what either side accepts from the other or from a
// record on disk (it names directories and files).
func ValidMigrationID(id string) error {
	if !migrationIDRE.MatchString(id) {
		return fmt.Errorf("migration id %q: %w", id, errdefs.ErrInvalid)
	}
	return nil
}

var netNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidName checks a name the other side gives for a host object (a network namespace, an
// interface, a bridge): letters, digits, '_', '.', '-', not starting with a symbol, ≤ 63.
func ValidName(s string) bool { return netNameRE.MatchString(s) }
