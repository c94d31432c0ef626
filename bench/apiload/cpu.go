package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// proc is a process whose CPU a GET run reports per request: in a TCG
// guest the daemon, Ceph's daemons and apiload itself share two vCPUs, so
// CPU per request is latency, whoever spends it.
type proc struct{ name, pid string }

// parseProcs reads -cpu-pids ("name=pid,..."); apiload itself is always
// first.
func parseProcs(s string) ([]proc, error) {
	out := []proc{{"apiload", "self"}}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, e := range strings.Split(s, ",") {
		n, p, ok := strings.Cut(strings.TrimSpace(e), "=")
		if _, err := strconv.Atoi(p); !ok || n == "" || err != nil {
			return nil, fmt.Errorf("-cpu-pids: %q is not NAME=PID", e)
		}
		out = append(out, proc{n, p})
	}
	return out, nil
}

// cpuTicks is the user+system CPU of pid so far, in clock ticks (USER_HZ,
// 100 on Linux), or -1 when it cannot be read (the process is gone).
func cpuTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return -1
	}
	// the command name may hold spaces and parentheses: fields count from
	// the last ')', where field 3 (state) starts
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return -1
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	k, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return -1
	}
	return u + k
}

func sampleCPU(ps []proc) []int64 {
	out := make([]int64, len(ps))
	for i, p := range ps {
		out[i] = cpuTicks(p.pid)
	}
	return out
}

// threadTicks is cpuTicks per thread name (comm) of pid's threads: a Go
// program's threads carry its own name, the ones librados starts theirs
// (msgr-worker-0, ms_dispatch, ...), so the split says whether the
// daemon's CPU goes to its Go code or to its RADOS client. Threads that
// end between two samples are not counted.
func threadTicks(pid string) map[string]int64 {
	dir := "/proc/" + pid + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := map[string]int64{}
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		if t := cpuTicks(pid + "/task/" + e.Name()); t >= 0 {
			out[strings.TrimSpace(string(b))] += t
		}
	}
	return out
}
