// Command ratebound measures how well a key's rate limit holds across
// function instances: it signs up a user on the Auth emulator, creates a key
// with the given perSecond and burst on the first origin, calls the metered
// API through every origin at once for a while, and prints the most calls
// let through (any answer but 429) in any one second against the bound,
// perSecond + burst.
//
//	go run ./cmd/ratebound -origins http://localhost:8711,http://localhost:8712 -rate 5 -burst 5 -for 10s
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	origins := flag.String("origins", "http://localhost:8711,http://localhost:8712", "comma-separated origins, one per instance")
	rate := flag.Int("rate", 5, "the key's perSecond")
	burst := flag.Int("burst", 5, "the key's burst")
	dur := flag.Duration("for", 10*time.Second, "how long to call")
	workers := flag.Int("workers", 4, "concurrent callers per origin")
	flag.Parse()
	auth := os.Getenv("FIREBASE_AUTH_EMULATOR_HOST")
	if auth == "" {
		fail("FIREBASE_AUTH_EMULATOR_HOST is not set")
	}
	list := strings.Split(*origins, ",")
	var signup struct{ IDToken string }
	post("http://"+auth+"/identitytoolkit.googleapis.com/v1/accounts:signUp?key=dev", "",
		fmt.Sprintf(`{"email":"rate%d@example.com","password":"secret123","returnSecureToken":true}`, time.Now().UnixNano()), &signup)
	var key struct{ Key string }
	post(list[0]+"/api/keys", "Bearer "+signup.IDToken,
		fmt.Sprintf(`{"name":"rate","limits":{"perSecond":%d,"burst":%d}}`, *rate, *burst), &key)
	if key.Key == "" {
		fail("no key created")
	}
	var mu sync.Mutex
	var passed []time.Time
	var spans []span
	refused, other := 0, map[int]int{}
	end := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for _, o := range list {
		for range *workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(end) {
					req, _ := http.NewRequest("POST", o+"/api/meter", nil)
					req.Header.Set("X-API-Key", key.Key)
					sent := time.Now()
					res, err := http.DefaultClient.Do(req)
					at := time.Now()
					if err != nil {
						fail(err.Error())
					}
					res.Body.Close()
					mu.Lock()
					switch res.StatusCode {
					case 429:
						refused++
					default:
						passed = append(passed, at)
						spans = append(spans, span{sent, at})
						other[res.StatusCode]++
					}
					mu.Unlock()
					if res.StatusCode == 429 {
						time.Sleep(5 * time.Millisecond)
					}
				}
			}()
		}
	}
	wg.Wait()
	slices.SortFunc(passed, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range passed {
		for passed[i].Sub(passed[j]) >= time.Second {
			j++
		}
		most = max(most, i-j+1)
	}
	// A call was let through at some moment between sending and answer:
	// "surely" counts the calls wholly inside a one-second window, which
	// were certainly let through in it.
	surely := 0
	for _, w := range spans {
		n := 0
		for _, c := range spans {
			if !c.sent.Before(w.sent) && c.answered.Sub(w.sent) < time.Second {
				n++
			}
		}
		surely = max(surely, n)
	}
	fmt.Printf("instances %d, perSecond %d, burst %d, %s: %d let through %v, %d refused (429); in any 1 s window: at most %d by answer time, surely %d (sent and answered in it); bound %d; mean %.2f/s\n",
		len(list), *rate, *burst, *dur, len(passed), other, refused, most, surely, *rate+*burst, float64(len(passed))/dur.Seconds())
}

type span struct{ sent, answered time.Time }

func post(url, auth, body string, out any) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fail(err.Error())
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "ratebound:", msg)
	os.Exit(1)
}
