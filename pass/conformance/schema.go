package conformance

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// The v0.1 JSON Schemas (Appendix A of the specification, MIT licence),
// embedded so the kit judges a target without a checkout of the spec.
//
//go:embed schemas/*.json
var embedded embed.FS

// schemas compiles the v0.1 schemas once per run.
type schemas struct {
	fsys fs.FS
	mu   sync.Mutex
	c    *jsonschema.Compiler
	done map[string]*jsonschema.Schema
	err  error
}

func newSchemas(dir string) *schemas {
	var fsys fs.FS
	if dir != "" {
		fsys = os.DirFS(dir)
	} else {
		fsys, _ = fs.Sub(embedded, "schemas")
	}
	s := &schemas{fsys: fsys, c: jsonschema.NewCompiler(), done: map[string]*jsonschema.Schema{}}
	s.c.AssertFormat()
	names, err := fs.Glob(fsys, "*.schema.json")
	if err != nil || len(names) == 0 {
		s.err = fmt.Errorf("conformance: no *.schema.json in the schema folder")
		return s
	}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			s.err = err
			return s
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			s.err = fmt.Errorf("conformance: schema %s: %w", n, err)
			return s
		}
		if err := s.c.AddResource(schemaURL(n), doc); err != nil {
			s.err = err
			return s
		}
	}
	return s
}

func schemaURL(name string) string { return "https://agentpass.conformance.invalid/" + path.Base(name) }

// validate checks body against schema name, or its properties/sub.
func (s *schemas) validate(body []byte, name, sub string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	loc := schemaURL(name)
	if sub != "" {
		loc += "#/properties/" + sub
	}
	sch, ok := s.done[loc]
	if !ok {
		var err error
		if sch, err = s.c.Compile(loc); err != nil {
			return fmt.Errorf("conformance: compile %s: %w", loc, err)
		}
		s.done[loc] = sch
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s: %w", name+subSuffix(sub), err)
	}
	return nil
}

func subSuffix(sub string) string {
	if sub == "" {
		return ""
	}
	return " (" + sub + ")"
}
