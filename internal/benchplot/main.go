// Command benchplot draws the throughput of BenchmarkThroughput against the
// number of requests in flight, one line per operation and per run, as an
// SVG file that needs nothing else to display.
//
// Usage:
//
//	go test -run '^$' -bench Throughput -throughput.inflight 1,4,16,32,64 ./internal/replicatest/ > after.txt
//	go run ./internal/benchplot -o docs/throughput.svg before=before.txt after=after.txt
//
// Each argument is label=file, a file of `go test -bench` output; lines of
// other benchmarks are ignored.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// point is one measurement: ops/s at inflight requests in flight.
type point struct {
	inflight int
	ops      float64
}

// series is one line of the plot.
type series struct {
	label  string
	points []point
}

var benchLine = regexp.MustCompile(`^BenchmarkThroughput/(\w+)/inflight=(\d+)(?:-\d+)?\s`)

// parse reads the BenchmarkThroughput lines of a `go test -bench` output,
// by operation.
func parse(r io.Reader) (map[string][]point, error) {
	out := map[string][]point{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[2])
		fields := strings.Fields(line)
		for i := 1; i < len(fields); i++ {
			if fields[i] == "ops/s" {
				v, err := strconv.ParseFloat(fields[i-1], 64)
				if err != nil {
					return nil, fmt.Errorf("%q: %v", line, err)
				}
				out[m[1]] = append(out[m[1]], point{n, v})
			}
		}
	}
	for op := range out {
		slices.SortFunc(out[op], func(a, b point) int { return a.inflight - b.inflight })
	}
	return out, sc.Err()
}

func main() {
	outFile := flag.String("o", "throughput.svg", "the SVG file to write")
	flag.Parse()
	var all []series
	for _, arg := range flag.Args() {
		label, file, ok := strings.Cut(arg, "=")
		if !ok {
			log.Fatalf("benchplot: %q: want label=file", arg)
		}
		f, err := os.Open(file)
		if err != nil {
			log.Fatal(err)
		}
		byOp, err := parse(f)
		f.Close()
		if err != nil {
			log.Fatal(err)
		}
		ops := make([]string, 0, len(byOp))
		for op := range byOp {
			ops = append(ops, op)
		}
		slices.Sort(ops)
		for _, op := range ops {
			all = append(all, series{label: op + " (" + label + ")", points: byOp[op]})
		}
	}
	if len(all) == 0 {
		log.Fatal("benchplot: no BenchmarkThroughput lines in the inputs")
	}
	if err := os.WriteFile(*outFile, []byte(svg(all)), 0o644); err != nil {
		log.Fatal(err)
	}
}

// svg draws the series on a logarithmic in-flight axis (1 to 64 spread
// evenly) and a linear ops/s axis from zero.
func svg(all []series) string {
	const w, h, left, right, top, bottom = 720.0, 420.0, 70.0, 200.0, 30.0, 50.0
	var xs []int
	top1 := 0.0
	for _, s := range all {
		for _, p := range s.points {
			if !slices.Contains(xs, p.inflight) {
				xs = append(xs, p.inflight)
			}
			top1 = max(top1, p.ops)
		}
	}
	slices.Sort(xs)
	ymax := niceCeil(top1)
	x := func(n int) float64 {
		i := slices.Index(xs, n)
		if len(xs) == 1 {
			return left
		}
		return left + float64(i)*(w-left-right)/float64(len(xs)-1)
	}
	y := func(v float64) float64 { return h - bottom - v/ymax*(h-top-bottom) }
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i := 0; i <= 5; i++ {
		v := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%.0f</text>`+"\n",
			left, w-right, y(v), y(v), left-6, y(v)+4, v)
	}
	for _, n := range xs {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", x(n), h-bottom+18, n)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">requests in flight</text>`+"\n", (left+w-right)/2, h-12)
	fmt.Fprintf(&b, `<text x="14" y="%.0f" transform="rotate(-90 14 %.0f)" text-anchor="middle">operations per second</text>`+"\n", (top+h-bottom)/2, (top+h-bottom)/2)
	for i, s := range all {
		c := colors[i%len(colors)]
		var pts []string
		for _, p := range s.points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.inflight), y(p.ops)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x(p.inflight), y(p.ops), c)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", c, strings.Join(pts, " "))
		ly := top + 18*float64(i)
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="2"/><text x="%.0f" y="%.0f">%s</text>`+"\n",
			w-right+12, w-right+32, ly, ly, c, w-right+38, ly+4, html.EscapeString(s.label))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := 1.0
	for p*10 <= v {
		p *= 10
	}
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
