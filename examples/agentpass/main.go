// Command agentpass is a small developer tool for AgentPass, acting as a
// Harness from the command line.
//
// # Overview
//
// It discovers a Service and a user's resolution, acquires and redeems a
// token (waiting for a person's approval, with the approval page's link),
// calls an API with it, or opens a browser session in Chromium. Pointed at
// the devnet (-ca and -dns from its manifest), it reaches every party there.
//
// # Usage
//
//	go run ./examples/agentpass [global flags] <command> [arguments] [flags]
//
//	discover <service-origin> [email]            the Service's configuration; with an email, its resolution answer
//	token    <service-origin> <email>            acquire and redeem a bearer token  [-task T] [-scope a,b] [-authority ID] [-pending FILE]
//	wait     [pending-file]                      resume a token interrupted while pending, print the token as token does
//	call     <URL>                               call an API with a token            [-X METHOD] [-d BODY] [-H 'K: V'] [-token T]
//	browser  <service-origin> <email>            acquire, redeem a browser session and open it in Chromium  [-dest URL] [-headless]
//	conformance [service-origin] -user EMAIL     check a Service and/or Authority (see pass/conformance)  [-html FILE] [-json]
//	keygen   <file>                              write a signing key (PKCS#8 PEM, 0600), print its JWK and thumbprint  [-alg ES256|Ed25519]
//
// Global flags (also accepted after the command): -devnet FILE (the
// devnet's manifest.json, read with package devnetclient: its CA file
// and DNS server), -ca FILE (extra PEM roots,
// e.g. the devnet's ca.pem), -dns HOST:PORT (nameserver for discovery and
// for resolving every host name when dialing; loopback and private
// addresses are then allowed), -json (machine-readable output on stdout),
// -harness-id ID, -version (the module version, "(devel)" when built from a
// checkout).
//
// # Interrupt and resume
//
// While a person decides, token saves the request to the -pending file
// (default agentpass/pending.json in the user's cache directory, e.g.
// ~/.cache; agentpass-pending.json in the current directory when there is
// none) with mode 0600, and the holder key to agentpass-keys/ next to it
// (0700). Ctrl-C (or -timeout) then stops waiting but leaves the request
// open at the Authority; `agentpass wait FILE` resumes it, in this or a
// later process, and removes both once the request is decided. token
// refuses to overwrite a saved request. The file reads the pass at an
// Authority without holder binding: treat it as a credential.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/agentpass-go/agentpass/discovery"
	"github.com/agentpass-go/agentpass/examples/devnet/devnetclient"
	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/pass"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runContext(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status: 0 success, 1
// failure (the error is printed), 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr, os.Getenv)
}

const usage = `usage: agentpass [-devnet MANIFEST | -ca FILE -dns HOST:PORT] [-json] [-harness-id ID] <command> [arguments] [flags]

commands:
  discover <service-origin> [email]   show the Service's configuration and, with an email, the resolution answer
  token <service-origin> <email>      acquire and redeem a bearer token   [-task T] [-scope a,b] [-authority ID] [-timeout D]
                                      [-pending FILE] (saved while pending; default agentpass/pending.json
                                      in the user's cache directory)
  wait [pending-file]                 resume a token interrupted while pending (Ctrl-C); prints the token
                                      [-timeout D]
  call <URL>                          call an API with a token             [-X METHOD] [-d BODY] [-H 'K: V'] [-token T]
                                      (the token comes from -token or $AGENTPASS_TOKEN)
  browser <service-origin> <email>    acquire, redeem a browser session and open it in Chromium
                                      [-dest URL] [-headless] [-chromium PATH] [-task T] [-authority ID]
  conformance [service-origin] -user EMAIL
                                      check a Service and/or an Authority against v0.1 and this SDK's
                                      documented choices; exit status 1 when a check fails
                                      [-service-config URL] [-authority-config URL] [-authority ID]
                                      [-admin-token T [-admin-api URL] | -prompt] (approve and revoke)
                                      [-api URL] (a Service API taking its bearer tokens: revocation check)
                                      [-user-none EMAIL] [-user-broken EMAIL] (users whose domain says
                                      "none", or points at an unusable configuration)
                                      [-kit origin,cert.pem,key.pem,listen-addr] (repeatable, at most 2:
                                      the kit's own Service, needed to call an Authority's validation)
                                      [-only ID,ID] [-html FILE] [-schemas DIR] [-approval-timeout D]
  keygen <file>                       write a new signing key for a Service or an Authority (PKCS#8 PEM, mode 0600)
                                      and print its public JWK and RFC 7638 thumbprint  [-alg ES256|Ed25519]

global flags (accepted before or after the command):
  -devnet FILE      the devnet's manifest.json: its CA file and DNS server (as -ca and -dns)
  -ca FILE          extra root certificates (PEM), e.g. the devnet's ca.pem
  -dns HOST:PORT    nameserver for discovery and for resolving host names when dialing
                    (loopback and private addresses are then allowed, as on the devnet)
  -json             machine-readable output on stdout
  -harness-id ID    harness.id to send (default agentpass-cli)
  -version          print the module version and exit
`

// cli is one invocation.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string

	ca, dns, harnessID string
	json               bool

	manifest string
	dev      *devnetclient.Client
	client   *http.Client
	disc     *discovery.Client

	mu sync.Mutex // progress is reported from the harness
}

// flags returns a flag set with the global flags.
func (c *cli) flags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.ca, "ca", c.ca, "")
	fs.StringVar(&c.dns, "dns", c.dns, "")
	fs.StringVar(&c.manifest, "devnet", c.manifest, "")
	fs.BoolVar(&c.json, "json", c.json, "")
	fs.StringVar(&c.harnessID, "harness-id", c.harnessID, "")
	return fs
}

// parse parses flags interspersed with positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	c := &cli{stdout: stdout, stderr: stderr, getenv: getenv, harnessID: "agentpass-cli"}
	fs := c.flags("agentpass")
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "agentpass: %v\n\n%s", err, usage)
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version())
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd := rest[0]; cmd {
	case "discover":
		err = c.discover(ctx, rest[1:])
	case "token":
		err = c.token(ctx, rest[1:])
	case "wait":
		err = c.wait(ctx, rest[1:])
	case "call":
		err = c.call(ctx, rest[1:])
	case "browser":
		err = c.browser(ctx, rest[1:])
	case "conformance":
		err = c.conformance(ctx, rest[1:])
	case "keygen":
		err = c.keygen(rest[1:])
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = &usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue), errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(stderr, "agentpass: %v\n\n%s", err, usage)
		return 2
	case errors.Is(err, errReported):
		return 1
	}
	if c.json {
		c.printJSON(map[string]any{"error": errorJSON(err)})
	} else {
		fmt.Fprintf(stderr, "agentpass: %v\n", err)
	}
	return 1
}

// errReported is a failure whose output was already written.
var errReported = errors.New("reported")

// setup builds the HTTP client and the discovery client from the flags.
func (c *cli) setup() error {
	if c.manifest != "" {
		dev, err := devnetclient.Load(c.manifest)
		if err != nil {
			return err
		}
		// Explicit -ca and -dns win over the manifest's.
		if c.ca == "" {
			c.ca = dev.Manifest.CAFile
		}
		if c.dns == "" {
			c.dns = dev.Manifest.DNS
		}
	}
	dev, err := devnetclient.New(devnetclient.Config{CAFile: c.ca, DNS: c.dns})
	if err != nil {
		return err
	}
	c.dev, c.client, c.disc = dev, dev.HTTPClient, dev.Discovery
	return nil
}

// harness builds the Harness client; keys, when not nil, keeps the holder
// keys of started requests beyond this process.
func (c *cli) harness(keys harness.KeyStore) (*harness.Client, error) {
	return harness.New(harness.Config{
		KeyStore:                     keys,
		HarnessID:                    c.harnessID,
		HTTPClient:                   c.client,
		Discovery:                    c.disc,
		InsecureAllowPrivateNetworks: c.dev.InsecureAllowPrivateNetworks,
		Progress:                     c.progress(),
	})
}

// progress reports the steps of an acquisition on stderr, the approval
// page once: events are changes of state, so nothing repeats while a
// person decides.
func (c *cli) progress() func(harness.Progress) {
	shown := false
	return func(p harness.Progress) {
		c.mu.Lock()
		defer c.mu.Unlock()
		w := c.stderr
		switch p.Event {
		case harness.EventServiceDiscovered:
			fmt.Fprintf(w, "· discovered %s\n", p.Service)
		case harness.EventAuthorityResolved:
			fmt.Fprintf(w, "· resolution for %s: %s\n", p.User, p.Branch)
		case harness.EventAuthorityChosen:
			fmt.Fprintf(w, "· asking %s\n", p.Authority)
		case harness.EventRequestCreated, harness.EventPending:
			if p.Status != pass.StatusPending || shown {
				return
			}
			shown = true
			if p.ApprovalURL != "" {
				fmt.Fprintf(w, "· waiting for approval: %s\n", p.ApprovalURL)
			} else {
				fmt.Fprintf(w, "· waiting for approval by %s (it gave no approval page)\n", p.Authority)
			}
		case harness.EventApproved:
			fmt.Fprintf(w, "· approved\n")
		case harness.EventDenied, harness.EventExpired, harness.EventCanceled, harness.EventRedeemed:
			fmt.Fprintf(w, "· %s\n", p)
		}
	}
}

func (c *cli) printJSON(v any) {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// errorJSON describes an error for -json output.
func errorJSON(err error) map[string]any {
	out := map[string]any{"message": err.Error()}
	var pe *pass.PeerError
	if errors.As(err, &pe) {
		out["status"], out["code"] = pe.Status, pe.Code
	}
	var choice *harness.ChoiceRequiredError
	if errors.As(err, &choice) {
		var ids []string
		for _, o := range choice.Options {
			ids = append(ids, o.Authority)
		}
		out["code"], out["options"] = "choice_required", ids
	}
	var denied *harness.DeniedError
	if errors.As(err, &denied) {
		out["code"], out["reason"] = "denied", denied.Reason
	}
	return out
}

// explain adds a hint to errors a developer can act on.
func explain(err error) error {
	var choice *harness.ChoiceRequiredError
	if errors.As(err, &choice) {
		var b strings.Builder
		b.WriteString("the Service offers a choice of Authorities; rerun with -authority <identifier>:")
		for _, o := range choice.Options {
			b.WriteString("\n  " + o.Authority)
		}
		return fmt.Errorf("%w\n%s", err, b.String())
	}
	return err
}

func splitScopes(s string) pass.Scope {
	if s == "" {
		return nil
	}
	var out pass.Scope
	for f := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}
