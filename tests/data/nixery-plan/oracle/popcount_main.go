// Oracle: popcount's counting (narInfoToRefs, counts, dropping 1s) over narinfos
// synthesised from closure graph files (one "References:" line per distinct path).
package main

import (
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	seen := map[string]bool{}
	narinfos := []string{}
	for _, f := range os.Args[1:] {
		var g struct {
			Graph []struct {
				Path string   `json:"path"`
				Refs []string `json:"references"`
			} `json:"graph"`
		}
		b, _ := ioutil.ReadFile(f)
		if err := json.Unmarshal(b, &g); err != nil {
			panic(err)
		}
		for _, e := range g.Graph {
			if seen[e.Path] {
				continue
			}
			seen[e.Path] = true
			refs := []string{}
			for _, r := range e.Refs {
				refs = append(refs, filepath.Base(r))
			}
			narinfos = append(narinfos, "StorePath: "+e.Path+"\nReferences: "+strings.Join(refs, " ")+"\nDeriver: x\n")
		}
	}
	counts := make(map[string]int)
	for _, ni := range narinfos {
		for _, ref := range narInfoToRefs(ni) {
			if ref == "" {
				continue
			}
			counts[ref] += 1
		}
	}
	for k, v := range counts {
		if v == 1 {
			delete(counts, k)
		}
	}
	b, _ := json.Marshal(counts)
	fmt.Println(string(b))
}
