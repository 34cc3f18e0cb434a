package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// What the bench reads of processes and of the machine from /proc.

// cpuSeconds is the process's user plus system time, from /proc/PID/stat
// (in clock ticks of 1/100 s, USER_HZ on Linux).
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it do not.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseFloat(fields[11], 64)
	stime, err2 := strconv.ParseFloat(fields[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil
}

// machineTicks is CPU time of all the machine's CPUs from /proc/stat, in
// USER_HZ ticks: busy (everything but idle and iowait) and in all.
type machineTicks struct{ busy, total float64 }

// readMachineTicks reads the first line of /proc/stat; where it cannot,
// it is zero and busyShare says 0.
func readMachineTicks() machineTicks {
	var t machineTicks
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t
	}
	line, _, _ := strings.Cut(string(b), "\n")
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return t
	}
	// user nice system idle iowait irq softirq steal; guest time, after
	// them, is counted in user already.
	for i, f := range fields[1:min(len(fields), 9)] {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return machineTicks{}
		}
		t.total += v
		if i != 3 && i != 4 { // idle, iowait
			t.busy += v
		}
	}
	return t
}

func (t machineTicks) sub(u machineTicks) machineTicks {
	return machineTicks{t.busy - u.busy, t.total - u.total}
}

func (t machineTicks) add(u machineTicks) machineTicks {
	return machineTicks{t.busy + u.busy, t.total + u.total}
}

// busyShare is the share of the machine's CPU time that was busy: its
// own and everything else's (server, proxy, handler).
func (t machineTicks) busyShare() float64 {
	if t.total <= 0 {
		return 0
	}
	return t.busy / t.total
}

// peakRSS is the process's VmHWM from /proc/PID/status, in MiB.
func peakRSS(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
}
