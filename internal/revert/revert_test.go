package revert

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestFailRunsInReverseAndContinuesPastErrors(t *testing.T) {
	var order []string
	r := New(nil)
	r.Add("a", func(context.Context) error { order = append(order, "a"); return nil })
	r.Add("b", func(context.Context) error { order = append(order, "b"); return errors.New("boom") })
	r.Add("c", func(context.Context) error { order = append(order, "c"); return nil })
	err := r.Fail(context.Background())
	if want := []string{"c", "b", "a"}; !reflect.DeepEqual(order, want) {
		t.Fatalf("order = %v, want %v", order, want)
	}
	if err == nil || !errors.Is(err, err) || err.Error() != "undo b: boom" {
		t.Fatalf("err = %v", err)
	}
	if err := r.Fail(context.Background()); err != nil {
		t.Fatalf("second Fail ran again: %v", err)
	}
	if len(order) != 3 {
		t.Fatalf("second Fail re-ran steps: %v", order)
	}
}

func TestSuccessDisarms(t *testing.T) {
	ran := false
	r := New(nil)
	r.Add("a", func(context.Context) error { ran = true; return nil })
	r.Success()
	if err := r.Fail(context.Background()); err != nil || ran {
		t.Fatalf("Fail after Success: err=%v ran=%v", err, ran)
	}
}

func TestUndoContextSurvivesCallerCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var undoErr error
	r := New(nil)
	r.Add("a", func(ctx context.Context) error { undoErr = ctx.Err(); return nil })
	_ = r.Fail(ctx)
	if undoErr != nil {
		t.Fatalf("undo saw a cancelled context: %v", undoErr)
	}
}
