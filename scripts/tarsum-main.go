// The reference TarSum tool for stevedore's tests: moby's pkg/tarsum over stdin, the
// version from the first argument (v0, v1 or dev), the sum or the error on stdout.
package main

import (
	"fmt"
	"io"
	"io/ioutil"
	"os"

	"github.com/docker/docker/pkg/tarsum"
)

func main() {
	version := tarsum.Version1
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "v0":
			version = tarsum.Version0
		case "dev":
			version = tarsum.VersionDev
		}
	}
	ts, err := tarsum.NewTarSum(os.Stdin, true, version)
	if err == nil {
		_, err = io.Copy(ioutil.Discard, ts)
	}
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println(ts.Sum(nil))
}
