// Command compile-eval measures a task-to-scope compiler against a corpus
// of tasks whose right scopes are known.
//
// # Overview
//
// It runs either the operator-authored templates from a file, or a model
// behind an HTTP endpoint, over every case of the corpus and prints the
// precision (the share of proposed scopes that were wanted) and the recall
// (the share of wanted scopes that were proposed). A team plugging in a
// model runs it before trusting the model's proposals to approvers.
//
// # Usage
//
//	go run ./examples/compile-eval -templates authority/testdata/compile/templates.json
//	go run ./examples/compile-eval -model-url https://model.example/complete -model-version 2026-11
//
// Flags: -corpus FILE (default authority/testdata/compile/corpus.json, a
// JSON object {"cases": [...]} of authority.CompileCase), -templates FILE,
// -model-url URL, -model-version V (required with -model-url), -timeout D
// (per model call, default 2s), -v (one line per case).
//
// The model endpoint receives the prompt as the text/plain body of a POST
// and answers 200 with the model's text as the body (at most 64 KiB).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/agentpass-go/agentpass/authority"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, http.DefaultClient); err != nil {
		fmt.Fprintln(os.Stderr, "compile-eval:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer, client *http.Client) error {
	fs := flag.NewFlagSet("compile-eval", flag.ContinueOnError)
	fs.SetOutput(out)
	corpusFile := fs.String("corpus", "authority/testdata/compile/corpus.json", "corpus `file`")
	templatesFile := fs.String("templates", "", "templates `file`")
	modelURL := fs.String("model-url", "", "model endpoint `URL`")
	modelVersion := fs.String("model-version", "", "model `version` recorded in proposals")
	timeout := fs.Duration("timeout", 2*time.Second, "per model call")
	verbose := fs.Bool("v", false, "print one line per case")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*templatesFile == "") == (*modelURL == "") {
		return errors.New("give exactly one of -templates and -model-url")
	}
	b, err := os.ReadFile(*corpusFile)
	if err != nil {
		return err
	}
	var corpus struct {
		Cases []authority.CompileCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &corpus); err != nil {
		return fmt.Errorf("corpus %s: %w", *corpusFile, err)
	}
	if len(corpus.Cases) == 0 {
		return fmt.Errorf("corpus %s has no cases", *corpusFile)
	}

	var c authority.Compiler
	if *templatesFile != "" {
		b, err := os.ReadFile(*templatesFile)
		if err != nil {
			return err
		}
		if c, err = authority.ParseTemplates(b); err != nil {
			return err
		}
	} else {
		m, err := authority.NewModelCompiler(authority.ModelConfig{
			Model:   httpModel(client, *modelURL),
			Version: *modelVersion,
			Timeout: *timeout,
		})
		if err != nil {
			return err
		}
		c = m
	}

	if *verbose {
		for _, cs := range corpus.Cases {
			p, r, err := authority.EvaluateCompiler(ctx, c, []authority.CompileCase{cs})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%-45s precision %.3f recall %.3f\n", cs.Name, p, r)
		}
	}
	p, r, err := authority.EvaluateCompiler(ctx, c, corpus.Cases)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "cases %d precision %.3f recall %.3f\n", len(corpus.Cases), p, r)
	return nil
}

// httpModel calls a model endpoint: the prompt as a text/plain POST body,
// the answer as the response body. The status, not the body, goes into
// errors: the body is remote text.
func httpModel(client *http.Client, url string) func(context.Context, string) (string, error) {
	return func(ctx context.Context, prompt string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewBufferString(prompt))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("model endpoint answered %s", resp.Status)
		}
		// One byte over the parser's cap, so an over-long answer is refused
		// by the parser rather than cut into valid-looking JSON.
		b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10+1))
		return string(b), err
	}
}
