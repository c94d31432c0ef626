package shell

import "fmt"

// UserError is a message for the operator, printed as it is: configshell's and upstream
// gwcli's texts, which start with a capital letter and name the object.
type UserError struct{ Msg string }

func (e *UserError) Error() string { return e.Msg }

// userErrorf builds a UserError; the format keeps upstream's capitalised wording.
func userErrorf(format string, a ...any) error { return &UserError{Msg: fmt.Sprintf(format, a...)} }
