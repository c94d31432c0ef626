package shell

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	prompt "github.com/c-bata/go-prompt"
	"golang.org/x/term"
)

// historyMax is how many lines ~/.gwcli/history keeps.
const historyMax = 1000

// Prompt is configshell's prompt: the current path, shortened in the middle to
// prompt_length characters, then "> ".
func (sh *Shell) Prompt() string {
	p := sh.cwd
	if l := sh.prefs.PromptLength; l > 0 && l < len(p) {
		half := (l - 3) / 2
		p = p[:half] + "..." + p[len(p)-half:]
	}
	return p + "> "
}

// Interactive runs the shell on the terminal until `exit` or Ctrl-D. Ctrl-C clears the
// line being typed (and interrupts a running command); Ctrl-Z is ignored, as upstream. The
// terminal state is saved first and restored on every way out: return, panic, SIGTERM,
// SIGHUP and SIGQUIT (go-prompt v0.2.6 leaves raw mode behind on some of them, its issue
// #228). errOut gets the one-line error of a failed command.
func (sh *Shell) Interactive(ctx context.Context, errOut io.Writer) (err error) {
	fd := int(os.Stdin.Fd())
	saved, gerr := term.GetState(fd)
	if gerr != nil {
		return fmt.Errorf("interactive mode needs a terminal: %w", gerr)
	}
	var restoreOnce sync.Once
	restore := func() { restoreOnce.Do(func() { _ = term.Restore(fd, saved) }) }
	defer restore()
	defer func() {
		if r := recover(); r != nil {
			restore()
			panic(r)
		}
	}()

	signal.Ignore(syscall.SIGTSTP)
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	var (
		mu        sync.Mutex
		cancelCmd context.CancelFunc
	)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case s := <-sigs:
				if s == syscall.SIGINT {
					// The terminal is in cooked mode only while a command runs: interrupt it.
					mu.Lock()
					if cancelCmd != nil {
						cancelCmd()
					}
					mu.Unlock()
					continue
				}
				restore()
				code := 128 + int(s.(syscall.Signal))
				os.Exit(code)
			}
		}
	}()

	hist := sh.loadHistory()
	enter := false
	markEnter := func(*prompt.Buffer) { enter = true }
	p := prompt.New(func(string) {}, sh.completer(ctx),
		prompt.OptionLivePrefix(func() (string, bool) { return sh.Prompt(), true }),
		prompt.OptionPrefix(sh.Prompt()),
		prompt.OptionHistory(hist),
		prompt.OptionTitle("gwcli"),
		prompt.OptionMaxSuggestion(12),
		prompt.OptionAddKeyBind(
			prompt.KeyBind{Key: prompt.Enter, Fn: markEnter},
			prompt.KeyBind{Key: prompt.ControlM, Fn: markEnter},
			prompt.KeyBind{Key: prompt.ControlJ, Fn: markEnter},
		),
	)
	for !sh.done {
		enter = false
		line := p.Input()
		// go-prompt returns "" both for an empty line and for Ctrl-D on an empty line; only
		// the first went through Enter.
		if line == "" && !enter {
			fmt.Fprintln(sh.o.Out)
			return nil
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		sh.appendHistory(line)
		cctx, cancel := context.WithCancel(ctx)
		mu.Lock()
		cancelCmd = cancel
		mu.Unlock()
		err := sh.Exec(cctx, line)
		mu.Lock()
		cancelCmd = nil
		mu.Unlock()
		cancel()
		if err != nil {
			fmt.Fprintln(errOut, FormatError(err))
		}
	}
	return nil
}

// FormatError is the one line an error shows to the operator.
func FormatError(err error) string {
	return strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
}

func (sh *Shell) historyPath() string {
	if sh.o.PrefsDir == "" {
		return ""
	}
	return filepath.Join(sh.o.PrefsDir, "history")
}

func (sh *Shell) loadHistory() []string {
	path := sh.historyPath()
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > historyMax {
		lines = lines[len(lines)-historyMax:]
	}
	return lines
}

func (sh *Shell) appendHistory(line string) {
	path := sh.historyPath()
	if path == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(line + "\n")
}

// completionTimeout bounds a live value lookup (Param.Complete) during a key press.
const completionTimeout = 2 * time.Second

func (sh *Shell) completer(ctx context.Context) prompt.Completer {
	return func(d prompt.Document) []prompt.Suggest {
		cctx, cancel := context.WithTimeout(ctx, completionTimeout)
		defer cancel()
		var out []prompt.Suggest
		for _, s := range sh.Complete(cctx, d.TextBeforeCursor()) {
			out = append(out, prompt.Suggest{Text: s})
		}
		return out
	}
}
