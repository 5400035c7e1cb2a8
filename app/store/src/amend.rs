//! Amending a stored run when it resumes with a change the trajectory allows (more steps).

use rusqlite::params;

use crate::{Result, Store};

impl Store {
    /// Replaces a run's stored configuration (`config`, TOML) and its planned step count, and
    /// logs `message` at `step` (the step it resumes after), in one transaction: the history
    /// then says what the run is planned to do, and its log says when that changed.
    pub fn amend_config(
        &self,
        run_id: i64,
        config: &str,
        steps_planned: usize,
        step: usize,
        message: &str,
    ) -> Result<()> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE runs SET config = ?2, steps_planned = ?3, \
             updated = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
            params![run_id, config, steps_planned as i64],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO logs (run_id, step, level, message) VALUES (?1, ?2, 'info', ?3)",
            params![run_id, step as i64, message],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }
}
