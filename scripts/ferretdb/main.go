// Command ferretdb-for-tests serves the MongoDB wire protocol on one 127.0.0.1 address with
// FerretDB 1.x's embeddable package over its SQLite backend, for tickpipe's MongoDB store tests
// (tests/servers/ferretdb.py starts it; scripts/setup/ferretdb.sh builds it).
//
// It exists because FerretDB's released command panics when built from the module proxy
// without its generated build/version/version.txt; the embeddable package reads no such file.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:27017", "TCP address to serve on (host:port)")
	dataDir := flag.String("data", "", "directory of the SQLite databases (required)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()

	if *dataDir == "" {
		fail("-data is required")
	}
	if !strings.HasPrefix(*listen, "127.0.0.1:") {
		fail("-listen must be a 127.0.0.1 address: this server has no authentication")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fail(fmt.Sprintf("-log-level: %s", err))
	}
	dir, err := filepath.Abs(*dataDir)
	if err != nil {
		fail(err.Error())
	}
	if err = os.MkdirAll(dir, 0o755); err != nil {
		fail(err.Error())
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	// The SQLite backend takes a file: URI of a directory, which must end with a slash.
	db, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: *listen},
		Logger:    logger,
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
	})
	if err != nil {
		fail(err.Error())
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The fixture waits for this line (and then for a ping) before the tests connect.
	fmt.Fprintf(os.Stderr, "serving %s\n", db.MongoDBURI())
	if err = db.Run(ctx); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "ferretdb-for-tests:", msg)
	os.Exit(2)
}
