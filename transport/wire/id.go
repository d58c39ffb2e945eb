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
