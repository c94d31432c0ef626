package api

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

// stageTimes is where one request's time went, stage by stage: the
// handler's document load, the commit's steps (lock, read, the change, the
// LIO check, encode, write), the local LIO apply and the calls to peers.
// It is answered as a Server-Timing header (RFC 8673's registry entry of
// the W3C Server Timing spec) and logged at debug level, so a client or a
// benchmark sees where a slow call spends its time without a profiler.
// A nil *stageTimes records nothing.
type stageTimes struct {
	start time.Time

	mu     sync.Mutex
	stages []stageTime
	// change is the time of the request's own change within the commit's
	// "mutation" step not yet reported: the rest of that step is the
	// check of what this gateway's LIO can take.
	change time.Duration
}

type stageTime struct {
	name string
	d    time.Duration
}

type stageKey struct{}

// withStages returns ctx carrying a fresh recorder, which the rados store
// also reports its commit steps to.
func withStages(ctx context.Context) (context.Context, *stageTimes) {
	st := &stageTimes{start: time.Now()}
	ctx = context.WithValue(ctx, stageKey{}, st)
	return rados.WithStageTimer(ctx, st.storeStage), st
}

// storeStage records a step of a Store call; the commit's "mutation" is
// split into the change itself ("change", timed by timedChange) and the
// LIO check around it ("lio-check").
func (st *stageTimes) storeStage(name string, d time.Duration) {
	if name != "mutation" {
		st.add(name, d)
		return
	}
	st.mu.Lock()
	change := st.change
	st.change = 0
	st.mu.Unlock()
	st.add("change", change)
	st.add("lio-check", d-change)
}

// timedChange is m, its time noted for the next "mutation" step.
func (st *stageTimes) timedChange(m rados.Mutation) rados.Mutation {
	if st == nil {
		return m
	}
	return func(d *config.Doc) error {
		t0 := time.Now()
		err := m(d)
		st.mu.Lock()
		st.change += time.Since(t0)
		st.mu.Unlock()
		return err
	}
}

// stagesOf is the recorder of ctx, or nil.
func stagesOf(ctx context.Context) *stageTimes {
	st, _ := ctx.Value(stageKey{}).(*stageTimes)
	return st
}

// add records d under name; a stage that runs again (a commit retried)
// adds to its total.
func (st *stageTimes) add(name string, d time.Duration) {
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := range st.stages {
		if st.stages[i].name == name {
			st.stages[i].d += d
			return
		}
	}
	st.stages = append(st.stages, stageTime{name, d})
}

// since records the time from t0 to now under name and returns now, the
// start of the next stage.
func (st *stageTimes) since(name string, t0 time.Time) time.Time {
	now := time.Now()
	st.add(name, now.Sub(t0))
	return now
}

// header is the Server-Timing value: each stage in the order it first ran,
// then "total", the time since the request reached the API; durations in
// milliseconds.
func (st *stageTimes) header() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	var b strings.Builder
	for _, s := range st.stages {
		writeServerTiming(&b, s.name, s.d)
		b.WriteString(", ")
	}
	writeServerTiming(&b, "total", time.Since(st.start))
	return b.String()
}

func writeServerTiming(b *strings.Builder, name string, d time.Duration) {
	b.WriteString(name)
	b.WriteString(";dur=")
	b.WriteString(strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 3, 64))
}

// logAttrs are the stages as slog attributes.
func (st *stageTimes) logAttrs() []any {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]any, 0, len(st.stages)+1)
	for _, s := range st.stages {
		out = append(out, slog.Duration(s.name, s.d))
	}
	return append(out, slog.Duration("total", time.Since(st.start)))
}

// serverTiming is the outermost middleware: it gives every request a
// recorder and answers what it recorded in the Server-Timing header. A
// request that recorded stages is also logged at debug level.
func (s *server) serverTiming(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		ctx, st := withStages(req.Context())
		c.SetRequest(req.WithContext(ctx))
		res := c.Response()
		res.Before(func() {
			res.Header().Set("Server-Timing", st.header())
		})
		err := next(c)
		if s.Logger.Enabled(ctx, slog.LevelDebug) && st.recorded() {
			s.Logger.Debug("request timings", append([]any{"method", req.Method, "path", req.URL.Path}, st.logAttrs()...)...)
		}
		return err
	}
}

func (st *stageTimes) recorded() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.stages) > 0
}
