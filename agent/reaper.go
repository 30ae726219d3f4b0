package agent

import (
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper collects every child that exits, as PID 1 must, and tells whoever
// watches a PID how it ended. The function is never waited on through
// os/exec: a restored function is not our exec.Cmd, and a wait4(-1) here
// would race with exec.Cmd.Wait. Helpers that need exec.Cmd.Wait (criu) run
// under Hold, which pauses reaping until they are done.
type reaper struct {
	mu      sync.Mutex // held while reaping, and by Hold
	watchMu sync.Mutex
	watched map[int]chan unix.WaitStatus
	sigs    chan os.Signal
	done    chan struct{}
}

func newReaper() *reaper {
	r := &reaper{
		watched: map[int]chan unix.WaitStatus{},
		sigs:    make(chan os.Signal, 1),
		done:    make(chan struct{}),
	}
	// Orphans of the function must come to us even when the agent is not
	// PID 1 (tests, or a runtime that gives us an init).
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	return r
}

// Spawn runs start with reaping paused and watches the PID it returns, so a
// child that exits at once cannot be reaped before anyone listens for it.
func (r *reaper) Spawn(start func() (int, error)) (int, <-chan unix.WaitStatus, error) {
	r.mu.Lock()
	pid, err := start()
	if err != nil {
		r.mu.Unlock()
		return 0, nil, err
	}
	ch := make(chan unix.WaitStatus, 1)
	r.watchMu.Lock()
	r.watched[pid] = ch
	r.watchMu.Unlock()
	r.mu.Unlock()
	r.reap()
	return pid, ch, nil
}

// Hold pauses reaping; the returned func resumes it and reaps what exited
// meanwhile.
func (r *reaper) Hold() func() {
	r.mu.Lock()
	return func() {
		r.mu.Unlock()
		r.reap()
	}
}

func (r *reaper) Close() {
	signal.Stop(r.sigs)
	close(r.done)
}

func (r *reaper) loop() {
	for {
		select {
		case <-r.done:
			return
		case <-r.sigs:
			r.reap()
		}
	}
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.watchMu.Lock()
		ch, ok := r.watched[pid]
		delete(r.watched, pid)
		r.watchMu.Unlock()
		if ok {
			ch <- ws
		}
	}
}
