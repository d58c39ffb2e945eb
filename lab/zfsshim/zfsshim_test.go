package zfsshim

import (
	"reflect"
	"testing"
)

func TestFlags(t *testing.T) {
	if !hasFlag([]string{"-rHp", "-t", "snapshot"}, 'p') || hasFlag([]string{"-rH", "-o", "name,p"}, 'p') {
		t.Error("hasFlag")
	}
	got := dropFlag([]string{"receive", "-F", "-u", "tank/x@s"}, 'u')
	if want := []string{"receive", "-F", "tank/x@s"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dropFlag = %v", got)
	}
	got = dropFlag([]string{"recv", "-Fu", "tank/u@x"}, 'u')
	if want := []string{"recv", "-F", "tank/u@x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dropFlag = %v", got)
	}
}
