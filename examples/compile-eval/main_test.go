package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const corpus = "../../authority/testdata/compile/corpus.json"

func TestRunTemplates(t *testing.T) {
	var out strings.Builder
	err := run(t.Context(), []string{"-corpus", corpus, "-templates", "../../authority/testdata/compile/templates.json"}, &out, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "precision 1.000 recall 1.000") {
		t.Errorf("output %q, want full precision and recall", out.String())
	}
}

// TestRunModel serves a model over TLS that proposes every offered scope
// that ends in ":read", and checks the figures the command prints.
func TestRunModel(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		prompt := string(b)
		var d struct {
			Available []struct{ Name string } `json:"available_scopes"`
		}
		if err := json.Unmarshal([]byte(prompt[strings.Index(prompt, "DATA:\n")+6:]), &d); err != nil {
			http.Error(w, "bad prompt", http.StatusBadRequest)
			return
		}
		type s struct {
			Name string `json:"name"`
			Why  string `json:"why"`
		}
		ans := struct {
			Scopes []s `json:"scopes"`
		}{Scopes: []s{}}
		for _, a := range d.Available {
			if strings.HasSuffix(a.Name, ":read") {
				ans.Scopes = append(ans.Scopes, s{a.Name, "reads"})
			}
		}
		_ = json.NewEncoder(w).Encode(ans)
	}))
	defer srv.Close()
	var out strings.Builder
	err := run(t.Context(), []string{"-corpus", corpus, "-model-url", srv.URL, "-model-version", "t1"}, &out, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if !strings.HasPrefix(got, "cases 38 precision 0.") || strings.Contains(got, "recall 1.000") {
		t.Errorf("output %q, want partial precision and recall over 38 cases", got)
	}

	// A failing endpoint fails the run.
	bad := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "secret internal detail", http.StatusInternalServerError)
	}))
	defer bad.Close()
	err = run(t.Context(), []string{"-corpus", corpus, "-model-url", bad.URL, "-model-version", "t1"}, &out, bad.Client())
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("err = %v, want a failure without the remote body", err)
	}
}

func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-corpus", corpus},
		{"-corpus", corpus, "-templates", "x", "-model-url", "https://m.example"},
		{"-corpus", corpus, "-model-url", "https://m.example"}, // no version
		{"-corpus", "missing.json", "-templates", "x"},
	} {
		if err := run(t.Context(), args, io.Discard, http.DefaultClient); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
