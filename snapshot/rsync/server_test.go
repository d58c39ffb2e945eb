package rsync

import (
	"strings"
	"testing"
)

func TestCheckServerArgs(t *testing.T) {
	good := strings.Fields("rsync --server -lHogDtpAXrSe.iLsfxCIvu --delete --numeric-ids . rootfs/")
	opts, err := CheckServerArgs(good, "rootfs")
	if err != nil || strings.Join(opts, " ") != "-lHogDtpAXrSe.iLsfxCIvu --delete --numeric-ids" {
		t.Fatalf("good args: %v %v", opts, err)
	}
	for _, bad := range []string{
		"rsync --server --sender -lHogDtpAXrSe.iLsfxCIvu . rootfs/",
		"rsync --server -lHogDtpAXrSe.iLsfxCIvu . ../etc/",
		"rsync --server -lHogDtpAXrSe.iLsfxCIvu . /etc/",
		"rsync --server -lHogDtpAXrSe.iLsfxCIvu --log-file=/etc/passwd . rootfs/",
		"rsync --server -lHogDtpAXrSe.iLsfxCIvu --temp-dir=/ . rootfs/",
		"rsync --server -lHogDtpAXrSe.iLsfxCIvu -lHogDtpAXrSe.iLsfxCIvu . rootfs/",
		"rsync --server --delete . rootfs/",
		"sh -c id . rootfs/",
		"rsync --server -lHog;id . rootfs/",
		"rsync --server -lHogDtpAXrSe.iLsfxCIvu rootfs/ .",
	} {
		if _, err := CheckServerArgs(strings.Fields(bad), "rootfs"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
