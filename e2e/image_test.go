package e2e

import (
	"regexp"
	"strings"
	"testing"
)

const labImage = "localhost/ferry-lab/workload:latest"

// TestImageShippedWhenMissing: the target lacks the container's image. A migration that fails
// after shipping it leaves no image there; one that succeeds ships only content (digest-checked)
// from the source's content store — no registry — and the workload arrives intact.
func TestImageShippedWhenMissing(t *testing.T) {
	requireLab(t)
	mustLab(t, "run", "a", "img", "--mem", "16")
	mustLab(t, "exec", "b", "--", "ctr", "image", "rm", "--sync", labImage)
	defer lab(t, "exec", "b", "--", "ctr", "image", "import", "--all-platforms", "/var/lib/ferry-lab/image/workload.tar")

	mustLab(t, "exec", "b", "--", "sh", "-c", "echo 'receiver/restore error' > /etc/ferry/failpoints")
	rep, r := migrate(t, "a", "img", "b")
	lab(t, "exec", "b", "--", "rm", "-f", "/etc/ferry/failpoints")
	if r.code != 1 || rep.Outcome != "rolled_back" || rep.bytesOf("image") == 0 {
		t.Fatalf("failing migration: exit %d %s, image bytes %d: %s", r.code, rep.Outcome, rep.bytesOf("image"), rep.Error)
	}
	if out := mustLab(t, "exec", "b", "--", "ctr", "image", "ls", "-q"); strings.Contains(out, labImage) {
		t.Errorf("the image shipped for a failed migration remains on b")
	}
	mustLab(t, "check", "a", "img")

	rep, r = migrate(t, "a", "img", "b")
	if r.code != 0 || rep.Outcome != "committed" {
		t.Fatalf("exit %d %s %s\n%s", r.code, rep.Outcome, rep.Error, r.stderr)
	}
	var shipped bool
	for _, p := range rep.Phases {
		shipped = shipped || p.Name == "image"
	}
	if !shipped || rep.bytesOf("image") < 1<<20 {
		t.Errorf("no image phase or too few bytes (%d)", rep.bytesOf("image"))
	}
	if out := mustLab(t, "exec", "b", "--", "ctr", "image", "ls", "-q"); !strings.Contains(out, labImage) {
		t.Errorf("b has no image after the move")
	}
	// A garbage collection (forced by deleting another name) must leave every blob of the
	// shipped image: the image is complete, not only its manifest.
	mustLab(t, "exec", "b", "--", "ctr", "image", "tag", labImage, "localhost/ferry-lab/gc:trigger")
	mustLab(t, "exec", "b", "--", "ctr", "image", "rm", "--sync", "localhost/ferry-lab/gc:trigger")
	if out := mustLab(t, "exec", "b", "--", "ctr", "image", "check"); !regexp.MustCompile(regexp.QuoteMeta(labImage)+`\s.*complete \((\d+)/(\d+)\)`).MatchString(out) || strings.Contains(out, "incomplete") {
		t.Errorf("after a garbage collection, b's copy of the shipped image is not complete:\n%s", out)
	}
	mustLab(t, "check", "b", "img")
	mustLab(t, "rm", "b", "img")
}
