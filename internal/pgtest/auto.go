package pgtest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// auto is the throwaway cluster a test binary starts for itself when
// AGENTPASS_TEST_POSTGRES is unset but PostgreSQL is installed.
var auto struct {
	once sync.Once
	dsn  string
	err  error
	keep *os.File // the pipe whose closing stops the cluster
}

// errNotInstalled means there is no PostgreSQL to start.
var errNotInstalled = errors.New("no PostgreSQL binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin")

// autoDSN starts the cluster once per test binary and returns its
// connection string.
func autoDSN() (string, error) {
	auto.once.Do(func() { auto.dsn, auto.err = startCluster() })
	return auto.dsn, auto.err
}

// findBin finds a PostgreSQL program as .ci/postgres.sh does: on PATH,
// else the newest /usr/lib/postgresql/*/bin.
func findBin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if p := filepath.Join(dirs[i], name); isExec(p) {
			return p
		}
	}
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// startCluster runs initdb and pg_ctl in a new directory, listening on a
// Unix socket there only (no port to collide with another binary's), under
// a shell that stops the cluster and removes the directory when this
// process exits, however it exits: the shell waits for the end of a pipe
// only this process holds open.
func startCluster() (string, error) {
	initdb, pgctl := findBin("initdb"), findBin("pg_ctl")
	if initdb == "" || pgctl == "" {
		return "", errNotInstalled
	}
	dir, err := os.MkdirTemp("", "agentpass-pg-")
	if err != nil {
		return "", err
	}
	var prefix []string
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return "", errors.New(`running as root and there is no "postgres" user to run PostgreSQL as`)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return "", err
		}
		runuser := findBin("runuser")
		if runuser == "" {
			os.RemoveAll(dir)
			return "", errors.New("running as root without runuser to start PostgreSQL as postgres")
		}
		prefix = []string{runuser, "-u", "postgres", "--"}
	}
	script := `set -e
d=$1; initdb=$2; pgctl=$3
"$initdb" -D "$d/data" -U postgres --auth=trust -E UTF8 >"$d/initdb.log" 2>&1
"$pgctl" -D "$d/data" -l "$d/postgres.log" -w -t 60 -o "-k $d -c listen_addresses= -c max_connections=200 -c fsync=off" start >/dev/null
echo ready
cat >/dev/null || true
"$pgctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
rm -rf "$d"`
	args := append(prefix, "/bin/sh", "-c", script, "sh", dir, initdb, pgctl)
	cmd := exec.Command(args[0], args[1:]...)
	stdin, keep, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	cmd.Stdin = stdin
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	stdin.Close()
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		keep.Close()
		_ = cmd.Wait()
		log, _ := os.ReadFile(filepath.Join(dir, "initdb.log"))
		os.RemoveAll(dir)
		return "", fmt.Errorf("starting a throwaway cluster with %s failed: %s", initdb, firstLine(log))
	}
	auto.keep = keep // held until the process exits
	go func() { _ = cmd.Wait() }()
	return "postgres://postgres@/postgres?host=" + dir + "&sslmode=disable", nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if s == "" {
		return "no output"
	}
	return s
}
