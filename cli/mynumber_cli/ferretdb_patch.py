"""The five fixes the native stack carries on top of FerretDB v1.24.2 (SQLite backend).

FerretDB v1 is no longer developed upstream (v2 replaced the SQLite backend
with PostgreSQL + DocumentDB), and v1.24.2 as released reads whole tables and loses concurrent updates:

1. **The `_id` index is never used.** The backend creates it on the
   expression ``_ferretdb_sjson->"_id"`` but looks documents up with
   ``_ferretdb_sjson->'$._id'``. The two mean the same to SQLite's JSON
   operators, but SQLite's planner matches index expressions by their form,
   so every find, update and delete by ``_id`` scanned the table: 25 ms per
   update at 10,000 documents, 1.4 s at 50,000. Fix: look up with the
   spelling the index was created with (``->'_id'``).

2. **Only a filter that is exactly ``{_id: <string or ObjectId>}`` reaches
   SQL.** ``{_id: x, version: 3}`` (a conditional update) and
   ``{_id: {$in: [...]}}`` (a batch read) were answered by decoding every
   document in Go. Fix: whenever the filter's top level has an ``_id``
   equality or a ``$in`` of strings / ObjectIds, narrow the SQL to those
   rows. FerretDB still applies the whole filter to what comes back (every
   caller of ``Query`` runs ``FilterIterator`` or ``FilterDocument``), so the
   results are the same; only the plan changes.

3. **Concurrent updates of one document are lost.** An update, upsert or
   ``findAndModify`` reads the document, applies the operators in Go and
   writes the whole document back, with nothing between two clients doing the
   same: two clients making 200 ``$inc`` each left 170 to 250 of the 400.
   MongoDB applies each single-document update atomically, and the services
   rely on that instead of transactions. Fix: one lock per collection around
   the read-modify-write of ``update`` and ``findAndModify`` (FerretDB is a
   single process, so this makes them atomic against each other; inserts
   stay unlocked and are guarded by the unique ``_id`` index).

4. **An update command of many statements hangs.** The handler opens a read
   for each statement and closes them all only when the command returns
   (``defer`` inside the loop). A statement that matches a document leaves its
   read open, so an ``update`` command of about 100 statements on existing
   documents (``bulk_write`` of ``UpdateOne``) takes every one of SQLite's
   100 connections and waits for ever, holding fix 3's lock, so every later
   update of that collection waits too. Also, each ``upserted`` entry gave its
   position in that list as the statement's ``index``, so a client matched an
   upserted ``_id`` to the wrong statement. Fix: close each statement's read
   when the statement is done, and report the statement's own index.

5. **Debug bookkeeping runs in release builds.** Every SQL statement built its
   debug log line, quoting the statement's arguments (whole documents), before
   the logger dropped it at the info level; and every transaction, row set and
   document iterator was registered with a pprof profile (a stack walk each) and
   given a finalizer, to find leaks in FerretDB's own debug builds. Together
   they took about a sixth of FerretDB's CPU during the benchmark flows. Fix:
   build the log line only when debug logging is on, and track resources only
   in debug builds.

None of the fixes changes what is stored, so a database written by an unpatched
build works with a patched one and the other way round. `tests/stack`
proves the first two through ``explain``, which returns SQLite's own query
plan; `tests/faults/test_database_atomicity.py` proves the third and the fourth.
"""

from __future__ import annotations

from pathlib import Path

FERRETDB_BUILD_SUFFIX = "id-pushdown-atomic-updates-bulk-updates-release-logging"

_QUERY_BLOCK = """\t// that logic should exist in one place
\t// TODO https://github.com/FerretDB/FerretDB/issues/3235
\tif params.Filter.Len() == 1 {
\t\tv, _ := params.Filter.Get("_id")
\t\tswitch v.(type) {
\t\tcase string, types.ObjectID:
\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)
\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
\t\t}
\t}
"""

_EXPLAIN_BLOCK = """\t// that logic should exist in one place
\t// TODO https://github.com/FerretDB/FerretDB/issues/3235
\tif params.Filter.Len() == 1 {
\t\tv, _ := params.Filter.Get("_id")
\t\tswitch v.(type) {
\t\tcase string, types.ObjectID:
\t\t\tfilterPushdown = true
\t\t\twhereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)
\t\t\targs = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
\t\t}
\t}
"""

ID_PUSHDOWN_GO = """// Added by the My Number platform's native stack (cli/mynumber_cli/ferretdb_patch.py).

package sqlite

import (
\t"fmt"
\t"strings"

\t"github.com/FerretDB/FerretDB/internal/backends/sqlite/metadata"
\t"github.com/FerretDB/FerretDB/internal/handler/sjson"
\t"github.com/FerretDB/FerretDB/internal/types"
\t"github.com/FerretDB/FerretDB/internal/util/must"
)

// maxIDsPushedDown keeps `_id IN (...)` well below SQLite's limit on bound parameters.
const maxIDsPushedDown = 10000

// idPushdown returns a WHERE clause that narrows a query to the rows whose _id
// the filter's top level pins down: `{_id: v}` or `{_id: {$in: [v, ...]}}`, where
// every v is a string or an ObjectID, next to any other conditions. It returns
// "" when the filter pins nothing down. Callers still apply the whole filter to
// the rows returned, so this only changes how many rows are read.
func idPushdown(filter *types.Document) (string, []any) {
\tif filter.Len() == 0 || !filter.Has("_id") {
\t\treturn "", nil
\t}

\tswitch v := must.NotFail(filter.Get("_id")).(type) {
\tcase string, types.ObjectID:
\t\treturn fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn), []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}

\tcase *types.Document:
\t\tif v.Len() != 1 || !v.Has("$in") {
\t\t\treturn "", nil
\t\t}

\t\tvalues, ok := must.NotFail(v.Get("$in")).(*types.Array)
\t\tif !ok || values.Len() == 0 || values.Len() > maxIDsPushedDown {
\t\t\treturn "", nil
\t\t}

\t\targs := make([]any, 0, values.Len())

\t\tfor i := 0; i < values.Len(); i++ {
\t\t\tswitch id := must.NotFail(values.Get(i)).(type) {
\t\t\tcase string, types.ObjectID:
\t\t\t\targs = append(args, string(must.NotFail(sjson.MarshalSingleValue(id))))
\t\t\tdefault:
\t\t\t\treturn "", nil
\t\t\t}
\t\t}

\t\tplaceholders := strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ")

\t\treturn fmt.Sprintf(` WHERE %s IN (%s)`, metadata.IDColumn, placeholders), args
\t}

\treturn "", nil
}
"""

WRITE_LOCK_GO = """// Added by the My Number platform's native stack (cli/mynumber_cli/ferretdb_patch.py).

package handler

import "sync"

// collectionWriteLocks holds one mutex per "database.collection".
var collectionWriteLocks sync.Map

// lockCollectionWrites serialises the read-modify-write of update and findAndModify on one
// collection, so concurrent updates of one document are applied atomically, as MongoDB does.
// It returns the unlock function.
func lockCollectionWrites(db, collection string) func() {
\tm, _ := collectionWriteLocks.LoadOrStore(db+"."+collection, new(sync.Mutex))
\tmu := m.(*sync.Mutex)
\tmu.Lock()

\treturn mu.Unlock
}
"""

_LOCK = "\tdefer lockCollectionWrites(params.DB, params.Collection)()\n\n"


def _debug_log_only(owner: str, direction: str) -> tuple[str, str, str, int]:
    """Fix 5: build a query's debug log line only when debug logging is on (3 places a file)."""
    line = f"\t{owner}.l.With(fields...).DebugContext(ctx, fmt.Sprintf(\"{direction} %s\", query))\n"
    return (
        f"internal/util/fsql/{'db' if owner == 'db' else 'tx'}.go",
        line,
        f"\tif {owner}.l.Enabled(ctx, slog.LevelDebug) {{\n\t" + line + "\t}\n",
        3,
    )


_NOT_IN_RELEASE_BUILDS = "\tif !debugbuild.Enabled {\n\t\treturn // leak tracking is for debug builds (fix 5)\n\t}\n\n"

_DEBUG_ONLY_BOOKKEEPING: tuple[tuple[str, str, str, int], ...] = (
    _debug_log_only("db", ">>>"),
    _debug_log_only("db", "<<<"),
    _debug_log_only("tx", ">>>"),
    _debug_log_only("tx", "<<<"),
    (
        "internal/util/resource/resource.go",
        "func Track(obj any, token *Token) {\n",
        "func Track(obj any, token *Token) {\n" + _NOT_IN_RELEASE_BUILDS,
        1,
    ),
    (
        "internal/util/resource/resource.go",
        "func Untrack(obj any, token *Token) {\n",
        "func Untrack(obj any, token *Token) {\n" + _NOT_IN_RELEASE_BUILDS,
        1,
    ),
)

# (file, exact text in v1.24.2, replacement[, how many times it occurs: 1 unless given]).
FERRETDB_PATCHES: tuple[tuple[str, str, str] | tuple[str, str, str, int], ...] = (
    (
        "internal/backends/sqlite/metadata/metadata.go",
        "IDColumn = DefaultColumn + \"->'$._id'\"",
        "IDColumn = DefaultColumn + \"->'_id'\"",
    ),
    (
        "internal/backends/sqlite/collection.go",
        _QUERY_BLOCK,
        "\twhereClause, args = idPushdown(params.Filter)\n",
    ),
    (
        "internal/handler/msg_update.go",
        "func (h *Handler) updateDocument(ctx context.Context, params *common.UpdateParams) (int32, int32, *types.Array, error) {\n",
        "func (h *Handler) updateDocument(ctx context.Context, params *common.UpdateParams) (int32, int32, *types.Array, error) {\n"
        + _LOCK,
    ),
    (
        "internal/handler/msg_findandmodify.go",
        "func (h *Handler) findAndModifyDocument(ctx context.Context, params *common.FindAndModifyParams) (*findAndModifyResult, error) {\n",
        "func (h *Handler) findAndModifyDocument(ctx context.Context, params *common.FindAndModifyParams) (*findAndModifyResult, error) {\n"
        + _LOCK,
    ),
    (
        "internal/backends/sqlite/collection.go",
        _EXPLAIN_BLOCK,
        "\twhereClause, args = idPushdown(params.Filter)\n\tfilterPushdown = whereClause != \"\" && params.Filter.Len() == 1\n",
    ),
    (
        "internal/handler/msg_update.go",
        "\t\tcloser := iterator.NewMultiCloser()\n\t\tdefer closer.Close()\n",
        "\t\tcloser := iterator.NewMultiCloser()\n",
    ),
    (
        "internal/handler/msg_update.go",
        "\t\tresult, err := common.UpdateDocument(ctx, c, \"update\", iter, &u)\n",
        "\t\tresult, err := common.UpdateDocument(ctx, c, \"update\", iter, &u)\n"
        "\t\tcloser.Close() // this statement's read ends here, not when the whole command returns\n",
    ),
    (
        "internal/handler/msg_update.go",
        "\tfor _, u := range params.Updates {\n",
        "\tfor statement, u := range params.Updates {\n",
    ),
    (
        "internal/handler/msg_update.go",
        "\t\t\t\t\"index\", int32(upserted.Len()),\n",
        "\t\t\t\t\"index\", int32(statement),\n",
    ),
    *_DEBUG_ONLY_BOOKKEEPING,
)

# New files added to the sources.
FERRETDB_NEW_FILES: dict[str, str] = {
    "internal/backends/sqlite/id_pushdown.go": ID_PUSHDOWN_GO,
    "internal/handler/write_lock.go": WRITE_LOCK_GO,
}


class PatchDoesNotApply(RuntimeError):
    """The FerretDB sources are not the ones the patch was written for."""


def patch_ferretdb_sources(src: Path) -> None:
    """Apply the fixes to a writable copy of the FerretDB module; fail loudly if one no longer applies."""
    for relative, before, after, *times in FERRETDB_PATCHES:
        path = src / relative
        text = path.read_text()
        if text.count(before) != (times[0] if times else 1):
            raise PatchDoesNotApply(f"the FerretDB patch for {relative} does not apply to these sources")
        path.write_text(text.replace(before, after))
    for relative, content in FERRETDB_NEW_FILES.items():
        path = src / relative
        if path.exists():
            raise PatchDoesNotApply(f"{relative} already exists in these sources")
        path.write_text(content)
