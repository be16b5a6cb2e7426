package browser_test

import (
	"context"
	"fmt"
	"log"

	"github.com/chromedp/chromedp"

	"github.com/agentpass-go/agentpass/harness"
	"github.com/agentpass-go/agentpass/harness/browser"
	"github.com/agentpass-go/agentpass/pass"
)

// Acquire a browser-session pass, redeem it, and land logged in on the
// destination page in headless Chromium. (Not run by go test: it needs a
// Service on the Internet and Chromium; the end-to-end tests run the same
// steps on a loopback network.)
func ExampleOpen() {
	ctx := context.Background()
	c, err := harness.New(harness.Config{HarnessID: "acme-browser-agent"})
	if err != nil {
		log.Fatal(err)
	}
	g, err := c.Acquire(ctx, harness.Request{
		Service:     "https://todo.example",
		User:        "alex@corp.example",
		Task:        pass.Task{Description: "Archive last year's done items"},
		Type:        pass.BrowserSession,
		Destination: "https://todo.example/lists",
	})
	if err != nil {
		log.Fatal(err)
	}
	init, err := c.RedeemBrowserSession(ctx, g, harness.RedeemOptions{})
	if err != nil {
		log.Fatal(err)
	}
	sess, err := browser.Open(ctx, init, browser.Options{})
	if err != nil {
		log.Fatal(err) // do not retry: acquire a new pass (H-RED-8)
	}
	defer sess.Close()
	title, err := chromedp.Run(sess.Context(), chromedp.Title())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sess.URL(), title)
}
