package shell

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// envInteractive makes the test binary run the interactive shell on its terminal, over the
// representative group's snapshot, with a probe command whose argument completes to the
// pools.
const envInteractive = "GWCLI_TEST_INTERACTIVE"

// RunTestChild runs what a child of the test binary is started for (the interactive
// shell on its terminal) and reports whether it did; the package's one TestMain (in
// cmd_api_test.go, package shell_test, which may import commands) calls it first.
func RunTestChild() (code int, ran bool) {
	if dir := os.Getenv(envInteractive); dir != "" {
		return interactiveMain(dir), true
	}
	return 0, false
}

func interactiveMain(prefsDir string) int {
	register(&Command{Kind: KindDisks, Name: "probe", Summary: "print the pool given",
		Params: []Param{{Name: "pool", Required: true, Complete: func(ctx context.Context, e *Env, _ *Node) []string {
			s, err := e.Snapshot(ctx)
			if err != nil {
				return nil
			}
			return sortedKeys(s.Pools)
		}}},
		Run: func(_ context.Context, e *Env, _ *Node, a Args) error {
			_, err := fmt.Fprintf(e.Out, "probe: pool is %s\n", a.Get("pool"))
			return err
		}})
	sh := New(Options{
		Load:     func(context.Context) (*Snapshot, error) { return groupSnapshot(), nil },
		Out:      os.Stdout,
		PrefsDir: prefsDir, Interactive: true,
	})
	if err := sh.Interactive(context.Background(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// ptyShell is the interactive shell running on a pseudo-terminal.
type ptyShell struct {
	t   *testing.T
	ptm *os.File
	tty *os.File
	// before is the terminal's settings before the shell started.
	before string
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
	code   int
}

func sttyG(t *testing.T, tty *os.File) string {
	t.Helper()
	c := exec.Command("stty", "-g")
	c.Stdin = tty
	out, err := c.Output()
	if err != nil {
		t.Fatalf("stty -g: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func startPty(t *testing.T, prefsDir string) *ptyShell {
	t.Helper()
	if _, err := exec.LookPath("stty"); err != nil {
		t.Fatalf("stty: %v", err)
	}
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := pty.Setsize(ptm, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	p := &ptyShell{t: t, ptm: ptm, tty: tty, done: make(chan struct{})}
	p.before = sttyG(t, tty)
	p.cmd = exec.Command(os.Args[0])
	p.cmd.Env = append(os.Environ(), envInteractive+"="+prefsDir, "TERM=xterm")
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = tty, tty, tty
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptm.Read(buf)
			p.mu.Lock()
			p.out.Write(buf[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		err := p.cmd.Wait()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		ptm.Close()
		tty.Close()
	})
	return p
}

var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[78DM]|\r`)

// screen is what the shell wrote, escape sequences and carriage returns removed.
func (p *ptyShell) screen() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ansi.ReplaceAllString(p.out.String(), "")
}

// waitFor waits until the output holds want (count times); the shell answers each key
// press, so this orders the test with the shell without sleeping.
func (p *ptyShell) waitFor(want string, count int) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Count(p.screen(), want) >= count {
			return
		}
		select {
		case <-p.done:
			if strings.Count(p.screen(), want) >= count {
				return
			}
			p.t.Fatalf("shell exited (%d) before printing %q:\n%s", p.code, want, p.screen())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.mu.Lock()
	raw := p.out.String()
	p.mu.Unlock()
	p.t.Fatalf("no %q (x%d) in:\n%s\nraw: %q", want, count, p.screen(), raw)
}

// waitPreview waits until go-prompt shows text as the preview of the chosen suggestion
// (drawn in its preview colour over the word being completed).
func (p *ptyShell) waitPreview(text string) {
	p.t.Helper()
	const previewColour = "\x1b[0;92;49m"
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		ok := strings.Contains(p.out.String(), previewColour+text)
		p.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("no preview of %q in:\n%s", text, p.screen())
}

// enter types text, waits for the shell to echo it, then presses Enter (two keys in one
// read would be taken as text).
func (p *ptyShell) enter(text string) {
	p.t.Helper()
	p.mu.Lock()
	n := strings.Count(p.out.String(), text)
	p.mu.Unlock()
	p.send(text)
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.mu.Lock()
		ok := strings.Count(p.out.String(), text) > n
		p.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%q not echoed:\n%s", text, p.screen())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.send("\r")
}

// complete types text, waits for want in the suggestion list, takes it with Tab and
// runs the line with Enter, which must print out. go-prompt reads a key per read: each
// key's effect is awaited before the next.
func (p *ptyShell) complete(text, want, out string) {
	p.send(text)
	p.waitFor(want, 1)
	p.send("\t")
	p.waitPreview(want)
	p.send("\r")
	p.waitFor(out, 1)
}

func (p *ptyShell) send(s string) {
	p.t.Helper()
	if _, err := p.ptm.Write([]byte(s)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *ptyShell) exitCode() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(20 * time.Second):
		p.t.Fatalf("shell did not exit:\n%s", p.screen())
		return -1
	}
}

func TestInteractivePty(t *testing.T) {
	prefs := t.TempDir()

	// Run 1: completion of a path and of an argument value, Ctrl-C, Ctrl-D.
	p := startPty(t, prefs)
	before := p.before
	p.waitFor("/> ", 1)
	p.complete("cd /isc", "/iscsi-targets/", "/iscsi-targets> ")
	p.enter("pwd")
	p.waitFor("\n/iscsi-targets\n", 1)
	p.complete("/disks probe s", "ssd", "probe: pool is ssd\n")
	p.complete("/disks probe pool=r", "pool=rbd", "probe: pool is rbd\n")

	// Ctrl-C clears the line: the half-typed command never runs.
	p.send("bogus")
	p.waitFor("bogus", 1)
	p.send("\x03")
	p.waitFor("bogus\n", 1)
	p.enter("pwd")
	p.waitFor("\n/iscsi-targets\n", 2)
	if strings.Contains(p.screen(), "Command not found bogus") {
		t.Errorf("Ctrl-C ran the line:\n%s", p.screen())
	}
	p.send("\x04")
	if code := p.exitCode(); code != 0 {
		t.Fatalf("Ctrl-D: exit %d\n%s", code, p.screen())
	}
	if after := sttyG(t, p.tty); after != before {
		t.Errorf("terminal settings changed:\nbefore %s\nafter  %s", before, after)
	}
	hist, err := os.ReadFile(filepath.Join(prefs, "history"))
	if err != nil || !strings.HasSuffix(string(hist), "/disks probe pool=rbd\npwd\n") {
		t.Errorf("history after run 1: %v %q", err, hist)
	}

	// Run 2: the history of run 1 comes back with Up; SIGTERM at the prompt (raw mode)
	// still restores the terminal.
	p = startPty(t, prefs)
	before = p.before
	p.waitFor("/> ", 1)
	p.send("\x1b[A") // Up: pwd
	p.waitFor("/> pwd", 1)
	p.send("\x1b[A") // Up: /disks probe pool=rbd
	p.waitFor("/disks probe pool=rbd", 1)
	p.send("\r")
	p.waitFor("probe: pool is rbd\n/> ", 1)
	raw := sttyG(t, p.tty)
	if raw == before {
		t.Errorf("the prompt did not put the terminal in raw mode")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(); code != 128+int(syscall.SIGTERM) {
		t.Errorf("SIGTERM: exit %d", code)
	}
	if after := sttyG(t, p.tty); after != before {
		t.Errorf("terminal settings changed by SIGTERM:\nbefore %s\nafter  %s", before, after)
	}
}
