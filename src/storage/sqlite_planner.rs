//! The query planner stability guarantee (QPSG) on every SQLite connection this process
//! opens.
//!
//! Without it, SQLite (3.47 and later) reads the value bound to `LIMIT ?` (and to `LIKE ?`,
//! and STAT4 probes) while planning, and marks the prepared statement as depending on it:
//! binding that parameter again expires the statement, and the next step prepares it
//! again. Every cached `... LIMIT ?` query (a `.first()`) was parsed and planned anew on
//! each call. With QPSG a statement's plan does not depend on bound values, so a cached
//! statement stays prepared (`SQLITE_DBCONFIG_ENABLE_QPSG`,
//! <https://sqlite.org/c3ref/c_dbconfig_defensive.html#sqlitedbconfigenableqpsg>).
//!
//! diesel gives no access to the raw connection, so the setting is made by an automatic
//! extension (`sqlite3_auto_extension`, <https://sqlite.org/c3ref/auto_extension.html>),
//! which SQLite runs on each connection as it opens.

use std::ffi::{c_char, c_int};
use std::sync::Once;

use libsqlite3_sys as ffi;

static INSTALL: Once = Once::new();

/// Installs the extension, once per process; call before opening a connection.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: `stable_plans` has the entry point's signature and stays valid for the
        // life of the process; registering it is thread-safe.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(stable_plans)) };
        if rc != ffi::SQLITE_OK {
            tracing::warn!(code = rc, "SQLite's query planner stability guarantee could not be set: cached statements with LIMIT are prepared again on each use");
        }
    });
}

/// Sets QPSG on a connection SQLite is opening.
unsafe extern "C" fn stable_plans(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: SQLite passes the connection it is opening; the call takes an int to set
    // and a nullable pointer that receives the setting as it now stands.
    unsafe {
        ffi::sqlite3_db_config(
            db,
            ffi::SQLITE_DBCONFIG_ENABLE_QPSG,
            1 as c_int,
            std::ptr::null_mut::<c_int>(),
        )
    }
}
