// Oracle: Nixery's layers.GroupLayers on a runtime graph, then the manifest's
// sort by MergeRating descending. Usage: oracle GRAPH.json POP.json BUDGET
package main

import (
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"sort"
	"strconv"

	"github.com/google/nixery/layers"
)

func main() {
	var g layers.RuntimeGraph
	b, _ := ioutil.ReadFile(os.Args[1])
	if err := json.Unmarshal(b, &g); err != nil {
		panic(err)
	}
	pop := layers.Popularity{}
	b, _ = ioutil.ReadFile(os.Args[2])
	if err := json.Unmarshal(b, &pop); err != nil {
		panic(err)
	}
	budget, _ := strconv.Atoi(os.Args[3])
	ls := layers.GroupLayers(&g, &pop, budget)
	sort.Slice(ls, func(i, j int) bool { return ls[i].MergeRating > ls[j].MergeRating })
	out := []map[string]interface{}{}
	for _, l := range ls {
		out = append(out, map[string]interface{}{"contents": l.Contents, "rating": l.MergeRating})
	}
	j, _ := json.Marshal(out)
	fmt.Println(string(j))
}
