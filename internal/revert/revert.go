// Package revert implements the revert pattern: every step that changes the world registers its
// undo before it makes the change; if the whole operation does not reach Success, the undos run
// in reverse order.
//
//	r := revert.New(log)
//	defer r.Fail(ctx)
//	r.Add("resume source", func(ctx context.Context) error { return rt.Resume(ctx, id) })
//	... change ...
//	r.Success()
//
// Undo functions get a context that is detached from the caller's cancellation (a Ctrl-C that
// aborted the operation must not abort its rollback) but bounded by a timeout.
package revert

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// UndoTimeout bounds the whole rollback.
const UndoTimeout = 2 * time.Minute

type step struct {
	name string
	fn   func(context.Context) error
}

// Reverter collects undo steps. It is safe for concurrent use.
type Reverter struct {
	mu    sync.Mutex
	steps []step
	done  bool
	log   *slog.Logger
}

// New returns an armed Reverter. log may be nil.
func New(log *slog.Logger) *Reverter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reverter{log: log}
}

// Add registers an undo step. Call it before the change it undoes.
func (r *Reverter) Add(name string, fn func(context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, step{name: name, fn: fn})
}

// Success disarms the Reverter: Fail becomes a no-op.
func (r *Reverter) Success() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done = true
	r.steps = nil
}

// Fail runs the registered undo steps in reverse order unless Success was called, and returns
// the joined errors of the steps that failed. Every step runs even if an earlier one failed.
// It is idempotent: a second call does nothing.
func (r *Reverter) Fail(ctx context.Context) error {
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return nil
	}
	r.done = true
	steps := r.steps
	r.steps = nil
	r.mu.Unlock()

	if len(steps) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), UndoTimeout)
	defer cancel()
	var errs []error
	for i := len(steps) - 1; i >= 0; i-- {
		s := steps[i]
		r.log.Info("rollback", "step", s.name)
		if err := s.fn(ctx); err != nil {
			r.log.Error("rollback step failed", "step", s.name, "err", err)
			errs = append(errs, fmt.Errorf("undo %s: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// Pending reports the names of registered undo steps, oldest first.
func (r *Reverter) Pending() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, len(r.steps))
	for i, s := range r.steps {
		names[i] = s.name
	}
	return names
}
