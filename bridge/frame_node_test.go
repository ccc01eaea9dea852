package bridge

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
)

// TestFramesMatchNode compares the frame bodies of many random payloads with
// what Node's JSON.stringify({id, ...JSON.parse(payload)}) produces — the
// exact code of superset-websocket — byte for byte. It needs node on PATH
// and skips without it.
func TestFramesMatchNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed; the golden files carry the same check for fixed cases")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var payloads []string
	for i := 0; i < 2000; i++ {
		payloads = append(payloads, randomObject(rng, 0))
	}
	script := `const rl=require("readline").createInterface({input:process.stdin});
rl.on("line",l=>{const d=JSON.parse(JSON.parse(l));delete d.id;console.log(JSON.stringify(JSON.stringify({id:"1795388654-42",...d})))});`
	cmd := exec.Command(node, "-e", script)
	var in bytes.Buffer
	for _, p := range payloads {
		b, _ := json.Marshal(p)
		in.Write(b)
		in.WriteByte('\n')
	}
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for i := 0; sc.Scan(); i++ {
		var want string
		if err := json.Unmarshal(sc.Bytes(), &want); err != nil {
			t.Fatal(err)
		}
		_, got, err := encodeEvent(goldenID, []byte(payloads[i]))
		if err != nil {
			t.Fatalf("payload %q: %v", payloads[i], err)
		}
		if string(got) != want {
			t.Fatalf("payload %s\n got %s\nnode %s", payloads[i], got, want)
		}
	}
}

// randomObject writes a JSON object with Python-style separators and a mix
// of escapes, numbers and nesting.
func randomObject(rng *rand.Rand, depth int) string {
	var b strings.Builder
	b.WriteString("{")
	n := rng.IntN(6)
	if rng.IntN(50) == 0 {
		n = 40 // large objects take the rewrite path
	}
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %s", randomString(rng), randomValue(rng, depth+1))
	}
	b.WriteString("}")
	return b.String()
}

func randomValue(rng *rand.Rand, depth int) string {
	k := rng.IntN(9)
	if depth > 3 && k >= 7 {
		k = 0
	}
	switch k {
	case 0:
		return randomString(rng)
	case 1:
		return fmt.Sprint(rng.Int64N(1<<53) - 1<<52)
	case 2:
		return []string{"1.0", "-0", "0.5", "1e21", "1e-7", "123456789012345678", "3.14159", "2E-300", "1.7976931348623157e308", "-1e-5", "100000000000000000000"}[rng.IntN(11)]
	case 3:
		return []string{"true", "false", "null"}[rng.IntN(3)]
	case 4, 5:
		return randomString(rng)
	case 6:
		return "[" + randomValue(rng, depth+1) + ", " + randomValue(rng, depth+1) + "]"
	default:
		return randomObject(rng, depth)
	}
}

func randomString(rng *rand.Rand) string {
	pieces := []string{"a", "job_id", "é", `\u00e9`, `\ud83d\ude00`, `\ud800`, `\/`, `\"`, `\\`, `\n`, `\t`, `\u0000`, `\u001f`, `\u2028`, "日本", `\u007f`, " ", "id", "7", "12", "0"}
	var b strings.Builder
	b.WriteString(`"`)
	for i := rng.IntN(4); i >= 0; i-- {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	b.WriteString(`"`)
	return b.String()
}
