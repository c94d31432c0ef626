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

// lioCheckThen is a lioChecker whose check hands back the reconcile of
// the document it checked, reusing what the check computed (the
// Reconciler's CheckThen): called with that document once committed,
// unchanged but for the epoch and stamps the commit sets.
type lioCheckThen interface {
	CheckThen(ctx context.Context, doc *config.Doc) (func(context.Context, *config.Doc) error, error)
}

// checked wraps m so that a change this gateway's LIO cannot take is not
// committed: after m, the document is built (LocalLIO's Check), and any
// problem the document before m did not already have refuses the commit
// with a 400 naming it. Problems an existing object already had do not
// block other changes, or the deletion of that object. When then is not
// nil and the LocalLIO can (lioCheckThen), *then receives the reconcile of
// the checked document that reuses the check's work.
//
// The document after m is checked first, and the one before only when it
// has problems: nearly every change has none, and each check of a whole
// document costs a hash of it at least. The document before is then the
// store's remembered one when it has the epoch of the one m changed (the
// commit bumps the epoch after m; every gateway, Python ones included,
// bumps it on each commit), or a fresh read.
func (s *server) checked(ctx context.Context, m rados.Mutation, then *func(context.Context, *config.Doc) error) rados.Mutation {
	c, ok := s.LIO.(lioChecker)
	if !ok {
		return m
	}
	return func(d *config.Doc) error {
		epoch := d.Epoch
		if err := m(d); err != nil {
			return err
		}
		var err error
		if ct, ok := c.(lioCheckThen); ok && then != nil {
			*then, err = ct.CheckThen(ctx, d)
		} else {
			err = c.Check(ctx, d)
		}
		after := problemTexts(err)
		if len(after) == 0 {
			return nil
		}
		var had []string
		if before := s.docAtEpoch(ctx, epoch); before != nil {
			had = problemTexts(c.Check(ctx, before))
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

// docAtEpoch is the committed document of epoch, to be read only: the
// store's remembered one, or a fresh read; nil when neither has that epoch
// (every problem then counts as new, and the change is refused).
func (s *server) docAtEpoch(ctx context.Context, epoch int64) *config.Doc {
	if cs, ok := s.Store.(cacher); ok {
		if doc := cs.Cached(); doc != nil && doc.Epoch == epoch {
			return doc
		}
	}
	if doc, err := s.Store.Load(ctx); err == nil && doc.Epoch == epoch {
		return doc
	}
	return nil
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
