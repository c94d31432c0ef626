package lio

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// Result is what Apply really did.
type Result struct {
	// Done lists the ops that succeeded (or found their object already
	// gone, for removals), in order.
	Done []Op `json:"done"`
	// Failed lists the ops that returned an error.
	Failed []Op `json:"failed,omitempty"`
	// Skipped lists ops not attempted: inside an object whose creation
	// failed, or after ctx ended.
	Skipped []Op `json:"skipped,omitempty"`
}

// Apply runs plan against f. It does not stop at the first error: the
// remaining independent ops still run, ops inside a directory whose mkdir
// failed are skipped, and the errors are joined. Removing something that
// is already gone counts as success. Because Observe+NewPlan is level
// triggered, re-running after a partial failure completes the work (a
// half-created storage object is seen as incompatible and re-created).
// Error texts carry op paths only, never written values.
func Apply(ctx context.Context, f FS, plan Plan) (Result, error) {
	var res Result
	var errs []error
	var failedDirs []string
	for i, op := range plan.Ops {
		if err := ctx.Err(); err != nil {
			res.Skipped = append(res.Skipped, plan.Ops[i:]...)
			errs = append(errs, fmt.Errorf("lio: apply stopped before %s: %w", op, err))
			break
		}
		if under(op.Path, failedDirs) {
			res.Skipped = append(res.Skipped, op)
			continue
		}
		if err := run(f, op); err != nil {
			res.Failed = append(res.Failed, op)
			errs = append(errs, fmt.Errorf("lio: %s: %w", op, err))
			if op.Kind == OpMkdir {
				failedDirs = append(failedDirs, op.Path)
			}
			continue
		}
		res.Done = append(res.Done, op)
	}
	return res, errors.Join(errs...)
}

func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

func run(f FS, op Op) error {
	switch op.Kind {
	case OpMkdir:
		// An object that appeared since Observe is what we wanted.
		if err := f.mkdir(op.Path); !errors.Is(err, fs.ErrExist) {
			return err
		}
		return nil
	case OpWrite:
		return f.write(op.Path, op.Value)
	case OpEnable:
		return f.write(op.Path+"/enable", "1")
	case OpDisable:
		return ignoreMissing(f.write(op.Path+"/enable", "0"))
	case OpSymlink:
		return f.symlink(op.Value, op.Path)
	case OpUnlink:
		return ignoreMissing(f.unlink(op.Path))
	case OpRmdir:
		return ignoreMissing(f.rmdir(op.Path))
	}
	return fmt.Errorf("unknown op kind %q", op.Kind)
}

func ignoreMissing(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
