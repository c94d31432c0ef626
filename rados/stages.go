package rados

import (
	"context"
	"time"
)

// StageTimer receives the duration of each step of a Store call: "lock",
// "read" (the object read and parsed), "mutation" (the caller's change),
// "encode" (validation and encoding), "write" for a commit, "version" (the
// stat) for a snapshot, preceded by "version-wait" when it waited for
// another caller's stat. The API answers them as its Server-Timing header.
type StageTimer func(stage string, d time.Duration)

type stageTimerKey struct{}

// WithStageTimer returns ctx with t receiving the steps of the Store calls
// made with it.
func WithStageTimer(ctx context.Context, t StageTimer) context.Context {
	return context.WithValue(ctx, stageTimerKey{}, t)
}

// stageClock reports the steps of one call to ctx's StageTimer, if any.
type stageClock struct {
	t    StageTimer
	last time.Time
}

func newStageClock(ctx context.Context) *stageClock {
	t, _ := ctx.Value(stageTimerKey{}).(StageTimer)
	return &stageClock{t: t, last: time.Now()}
}

// mark ends the step called name, started at the previous mark.
func (c *stageClock) mark(name string) {
	if c.t == nil {
		return
	}
	now := time.Now()
	c.t(name, now.Sub(c.last))
	c.last = now
}
