package migrate

import "time"

// Event is one step of a migration as it happens, for progress displays: a phase starting or
// ending, the plan's sizes, bytes sent on a stream (from the transport), the end.
type Event struct {
	Time      time.Time `json:"time"`
	Migration string    `json:"migration,omitempty"`
	Container string    `json:"container,omitempty"`
	Kind      string    `json:"kind"` // EventPhaseStart, EventPhaseEnd, EventPlan, EventBytes, EventDone
	Phase     string    `json:"phase,omitempty"`
	Error     string    `json:"error,omitempty"`
	// EventPlan: what will move (estimates from the source).
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	FSBytes     uint64 `json:"fs_bytes,omitempty"`
	Strategy    string `json:"strategy,omitempty"`
	// EventBytes: a stream's payload so far.
	Stream string `json:"stream,omitempty"`
	Bytes  int64  `json:"bytes,omitempty"`
	// EventDone: the outcome.
	Outcome string `json:"outcome,omitempty"`
}

// Event kinds.
const (
	EventPhaseStart = "phase-start"
	EventPhaseEnd   = "phase-end"
	EventPlan       = "plan"
	EventBytes      = "bytes"
	EventDone       = "done"
)

// emit sends e to the configured progress sink, if any.
func (m *run) emit(e Event) {
	if m.cfg.Progress == nil {
		return
	}
	e.Time, e.Migration, e.Container = time.Now(), m.cfg.ID, m.cfg.Container
	m.cfg.Progress(e)
}
