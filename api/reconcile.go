package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"ceph-iscsi/config"
	"ceph-iscsi/rados"
)

// lioChecker is the part of a LocalLIO that can build a document into this
// gateway's desired LIO state without touching LIO. The error joins one
// error per object that cannot be built.
type lioChecker interface {
	Check(ctx context.Context, doc *config.Doc) error
}

// lioStatuser is the part of a LocalLIO that reports what its last
// reconcile left undone.
type lioStatuser interface {
	ReconcileStatus() ReconcileStatus
}

// ReconcileStatus is what the last reconcile of this gateway's LIO left
// undone, as GET /api/gatewayinfo reports it under "reconcile". The
// daemon retries with back-off until Converged.
type ReconcileStatus struct {
	// Epoch is the configuration epoch of the last reconcile.
	Epoch int64 `json:"epoch"`
	// Converged: LIO holds everything the configuration gives this gateway.
	Converged bool `json:"converged"`
	// Errors name each object left as LIO has it, or each failed LIO
	// operation ("object": "LIO"); never a secret.
	Errors []ReconcileError `json:"errors"`
	// Runs counts this daemon's reconciles. A change reaches a gateway
	// both through its coordinator's call and through the config watch,
	// and is reconciled once.
	Runs int64 `json:"runs"`
}

// ReconcileError is one object a reconcile could not converge.
type ReconcileError struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// checked wraps m so that a change this gateway's LIO cannot take is not
// committed: after m, the document is built (LocalLIO's Check), and any
// problem the document before m did not already have refuses the commit
// with a 400 naming it. Problems an existing object already had do not
// block other changes, or the deletion of that object.
//
// The document before m is checked first, instead of a copy of it after:
// the Reconciler memoizes what it built by content, and that document is
// nearly always the one it last reconciled, so the check costs a hash of
// it, not a build or a copy.
func (s *server) checked(ctx context.Context, m rados.Mutation) rados.Mutation {
	c, ok := s.LIO.(lioChecker)
	if !ok {
		return m
	}
	return func(d *config.Doc) error {
		had := problemTexts(c.Check(ctx, d))
		if err := m(d); err != nil {
			return err
		}
		after := problemTexts(c.Check(ctx, d))
		if len(after) == 0 {
			return nil
		}
		var added []string
		for _, p := range after {
			if !slices.Contains(had, p) {
				added = append(added, p)
			}
		}
		if len(added) == 0 {
			return nil
		}
		return httpErr(http.StatusBadRequest, "change refused, it cannot be applied to LIO on %s: %s", s.Gateway, strings.Join(added, "; "))
	}
}

// problemTexts flattens a Check error into one text per object.
func problemTexts(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, problemTexts(e)...)
		}
		return out
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return []string{err.Error()}
}

// reconcile converges local LIO on doc. It always follows a commit (or a
// coordinator's commit-to-be), so a client that disconnects must not stop
// it half-way: the context keeps its values but not its cancellation.
func (s *server) reconcile(ctx context.Context, doc *config.Doc) error {
	return s.LIO.Reconcile(context.WithoutCancel(ctx), doc)
}
