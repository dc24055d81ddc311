//! What the simulated terminals, the cloud and the people do each step:
//! local writes, cloud-side writes, a person acting on dead letters and
//! conflicts, and the spells of a full or gone store.

use super::*;

impl<S: SimServer> Sim<S> {
    pub(super) fn deliver_delayed(&mut self, i: usize, all: bool) {
        let reqs: Vec<PushRequest> = {
            let mut net = self.clients[i].net.lock().unwrap();
            if all {
                std::mem::take(&mut net.delayed)
            } else if !net.delayed.is_empty() {
                let k = self.rng.below(net.delayed.len() as u64) as usize;
                vec![net.delayed.remove(k)]
            } else {
                vec![]
            }
        };
        for r in reqs {
            let n = r.mutations.len();
            let res = self.server.service().push(&self.clients[i].ctx, r);
            self.log(format!(
                "{} late delivery of {n} mutations: {:?}",
                self.clients[i].label,
                res.map(|r| r.acks.into_iter().map(|a| a.result).collect::<Vec<_>>())
            ));
        }
    }

    pub(super) fn local_write(&mut self, i: usize) -> Result<(), String> {
        let branch_rooms = 4;
        let name = self.clients[i].label.clone();
        let roll = self.rng.below(100);
        let k = 1 + self.rng.below(3);
        let value = self.rng.below(5);
        let r = self.rng.below(10);
        self.clients[i].created += 1;
        let serial = self.clients[i].created;
        let (desc, result) = {
            let engine = self.clients[i].engine.as_ref().unwrap();
            let outbox_before = block_on(engine.outbox()).len();
            let audit_before = block_on(engine.audit(0, usize::MAX))
                .map(|a| a.len())
                .unwrap_or(0);
            let (desc, result) = match roll {
                0..=29 => {
                    let room = 1 + self.rng.below(branch_rooms);
                    let field = *self.rng.pick(&["status", "notes", "floor"]);
                    let v = match field {
                        "status" => {
                            json!(["dirty", "clean", "inspected", "ooo", "dnd"][value as usize])
                        }
                        "notes" => json!(format!("{name}-{value}")),
                        _ => json!(value),
                    };
                    let mut f = Fields::new();
                    f.insert(field.to_string(), v);
                    // Now and then a write is held for review (issue 18):
                    // decided by the write's serial, not the rng, so that a
                    // seed's other choices stay what they were.
                    let hold = serial % 17 == 5;
                    let options = tidesync::scoring::WriteOptions {
                        hold: hold.then_some(true),
                    };
                    (
                        format!(
                            "patch rooms/room-{room} {field}{}",
                            if hold { " (held for review)" } else { "" }
                        ),
                        block_on(engine.patch_with("rooms", &format!("room-{room}"), f, &options)),
                    )
                }
                30..=44 => {
                    if r == 0 {
                        let id = format!("task-{name}-{serial}");
                        (
                            format!("create tasks/{id}"),
                            block_on(engine.create(
                                "tasks",
                                Some(&id),
                                fields(json!({"done": false, "assignee": name})),
                            )),
                        )
                    } else if r == 1 {
                        (
                            format!("delete tasks/task-{k}"),
                            block_on(engine.delete("tasks", &format!("task-{k}"))),
                        )
                    } else if r == 2 {
                        (
                            format!("recreate tasks/task-{k}"),
                            block_on(engine.create(
                                "tasks",
                                Some(&format!("task-{k}")),
                                fields(json!({"done": false, "assignee": ""})),
                            )),
                        )
                    } else {
                        (
                            format!("patch tasks/task-{k}"),
                            block_on(engine.patch(
                                "tasks",
                                &format!("task-{k}"),
                                fields(json!({"done": value % 2 == 0, "assignee": name})),
                            )),
                        )
                    }
                }
                45..=59 => {
                    let inc = 1 + self.rng.below(2);
                    (
                        format!("patch incidents/inc-{inc}"),
                        block_on(engine.patch(
                            "incidents",
                            &format!("inc-{inc}"),
                            fields(json!({"state": (["open", "ack", "closed"][(value % 3) as usize]), "owner": name})),
                        )),
                    )
                }
                60..=68 => (
                    format!("patch catalog/item-{k}"),
                    block_on(engine.patch(
                        "catalog",
                        &format!("item-{k}"),
                        fields(json!({"price": 50 + value})),
                    )),
                ),
                69 => (
                    // Read-only on the server: refused with POLICY_VIOLATION.
                    "patch rates/rate-1".to_string(),
                    block_on(engine.patch(
                        "rates",
                        "rate-1",
                        fields(json!({"amount": 90 + value})),
                    )),
                ),
                _ => {
                    // 1% of the totals break the server's rule (EVENT_INVALID).
                    let total = self.rng.below(MAX_SALE_TOTAL + 101);
                    (
                        "append sales".to_string(),
                        block_on(engine.append(
                            "sales",
                            None,
                            fields(json!({"total": total, "terminal": name})),
                        )),
                    )
                }
            };
            if let Err(e) = &result {
                // A refused write leaves nothing behind.
                let outbox_after = block_on(engine.outbox()).len();
                let audit_after = block_on(engine.audit(0, usize::MAX))
                    .map(|a| a.len())
                    .unwrap_or(0);
                if outbox_after != outbox_before || audit_after != audit_before {
                    return Err(self.fail(format!("failed write ({e}) left outbox {outbox_before}->{outbox_after}, audit {audit_before}->{audit_after}")));
                }
            }
            (desc, result.map(|_| ()))
        };
        match result {
            Ok(()) => {
                self.stats.local_writes += 1;
                self.log(format!("{name} {desc}"));
                Ok(())
            }
            Err(e) if matches!(e.code(), ErrorCode::QuotaExceeded | ErrorCode::StoreGone) => {
                self.log(format!("{name} {desc} refused: {}", e.code()));
                self.store_refusal(i, "write", e.code())
            }
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::NotFound
                        | ErrorCode::AlreadyExists
                        | ErrorCode::InvalidState
                        | ErrorCode::StorageFailed
                ) =>
            {
                self.log(format!("{name} {desc} refused: {}", e.code()));
                Ok(())
            }
            Err(e) => Err(self.fail(format!("{name} {desc}: unexpected error {e}"))),
        }
    }

    pub(super) fn cloud_write(&mut self) -> Result<(), String> {
        let branch = *self.rng.pick(&BRANCHES);
        let p = Partition::new(&self.tenant, branch);
        let now = self.now.load(Ordering::SeqCst);
        let hlc = Hlc {
            wall_ms: now,
            counter: 0,
            node: 0xC10D,
        };
        let (key, f) = match self.rng.below(4) {
            0 => (
                EntityKey::new("catalog", format!("item-{}", 1 + self.rng.below(3))),
                fields(json!({"price": 200 + self.rng.below(50)})),
            ),
            1 => (
                EntityKey::new("rooms", format!("room-{}", 1 + self.rng.below(4))),
                fields(json!({"status": "ooo", "notes": "maintenance", "floor": 9})),
            ),
            2 => (
                EntityKey::new("incidents", format!("inc-{}", 1 + self.rng.below(2))),
                fields(json!({"state": "escalated", "owner": "cloud"})),
            ),
            _ => (
                EntityKey::new("tasks", format!("task-{}", 1 + self.rng.below(3))),
                fields(json!({"done": true, "assignee": "cloud"})),
            ),
        };
        if key.collection == "tasks" && self.rng.chance(300) {
            // The cloud deletes a shared task: pending local edits of it
            // must surface (conflict or dead letter), never vanish.
            self.log(format!("cloud deletes {branch}:{key}"));
            return self
                .server
                .service()
                .admin_delete(&p, &key, hlc)
                .map(|_| ())
                .map_err(|e| self.fail(format!("admin_delete failed: {e:?}")));
        }
        self.log(format!("cloud writes {branch}:{key}"));
        self.server
            .service()
            .admin_put(&p, &key, f, hlc)
            .map(|_| ())
            .map_err(|e| self.fail(format!("admin_put failed: {e:?}")))
    }

    /// A person works the sync center: retries or discards dead letters and
    /// resolves conflicts. When `all`, every item is handled.
    pub(super) fn user_acts(&mut self, i: usize, all: bool) -> Result<(), String> {
        let Some(engine) = self.clients[i].engine.as_ref() else {
            return Ok(());
        };
        let name = self.clients[i].label.clone();
        let mut notes = Vec::new();
        let mut handled = (0, 0);
        let dead = block_on(engine.dead_letters());
        for d in dead.iter().take(if all { usize::MAX } else { 1 }) {
            let OutboxState::DeadLetter { code, .. } = &d.state else {
                continue;
            };
            // Permanent refusals are discarded; anything else is retried.
            let discard = code.is_permanent();
            let r = if discard {
                notes.push(format!("discard {} ({code})", d.mutation.op_id));
                block_on(engine.discard(d.seq))
            } else {
                notes.push(format!("retry {} ({code})", d.mutation.op_id));
                block_on(engine.retry(d.seq))
            };
            match r {
                Ok(()) => {
                    handled.0 += 1;
                    let t = &mut self.tracks[store_index(i)];
                    let op = d.mutation.op_id.clone();
                    if discard {
                        t.discarded.insert(op);
                        self.stats.lanes.discarded += 1;
                    } else {
                        t.retried.insert(op);
                        self.stats.lanes.retried += 1;
                    }
                }
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::StorageFailed | ErrorCode::QuotaExceeded | ErrorCode::StoreGone
                    ) => {}
                Err(e) => return Err(self.fail(format!("{name} dead letter action: {e}"))),
            }
        }
        // Writes held for review: a person sends one on, or throws it
        // away (by its seq, so that the rng's stream is left alone).
        let held = block_on(engine.held());
        for h in held.iter().take(if all { usize::MAX } else { 1 }) {
            let discard = h.seq % 3 == 0;
            let op = h.mutation.op_id.clone();
            notes.push(format!(
                "{} held {op}",
                if discard { "discard" } else { "release" }
            ));
            let r = if discard {
                block_on(engine.discard(h.seq))
            } else {
                block_on(engine.release(h.seq))
            };
            match r {
                Ok(()) => {
                    let t = &mut self.tracks[store_index(i)];
                    if discard {
                        t.discarded.insert(op);
                        self.stats.lanes.held_discarded += 1;
                    } else {
                        self.stats.lanes.held_released += 1;
                    }
                }
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::StorageFailed
                            | ErrorCode::QuotaExceeded
                            | ErrorCode::StoreGone
                            | ErrorCode::NotFound
                    ) => {}
                Err(e) => return Err(self.fail(format!("{name} held action: {e}"))),
            }
        }
        let conflicts = block_on(engine.conflicts());
        for c in conflicts.iter().take(if all { usize::MAX } else { 1 }) {
            let choice = match self.rng.below(3) {
                0 => Resolution::Local,
                1 => Resolution::Server,
                _ => Resolution::Edited(fields(json!({"state": "merged", "owner": name}))),
            };
            notes.push(format!("resolve {} with {choice:?}", c.key));
            match block_on(engine.resolve(&c.key, choice)) {
                Ok(()) => handled.1 += 1,
                Err(e)
                    if matches!(
                        e.code(),
                        ErrorCode::StorageFailed | ErrorCode::QuotaExceeded | ErrorCode::StoreGone
                    ) => {}
                Err(e) => return Err(self.fail(format!("{name} resolve {}: {e}", c.key))),
            }
        }
        self.stats.dead_letters_handled += handled.0;
        self.stats.conflicts_resolved += handled.1;
        for n in notes {
            self.log(format!("{name} {n}"));
        }
        Ok(())
    }

    /// Ends the spells of a full or gone store that are over. When a gone
    /// database is back, the host reopens the engines on it half the time
    /// (the others find it back by themselves).
    pub(super) fn end_spells(&mut self) {
        let step = self.stats.steps;
        for s in 0..self.tracks.len() {
            if self.tracks[s].full_until != 0 && step >= self.tracks[s].full_until {
                self.tracks[s].full_until = 0;
                self.clients[s].store.set_full(false);
                self.log(format!("{} store has room again", self.clients[s].name));
            }
            if self.tracks[s].gone_until != 0 && step >= self.tracks[s].gone_until {
                self.tracks[s].gone_until = 0;
                self.clients[s].store.fail_reads(false);
                self.log(format!("{} store is back", self.clients[s].name));
                if self.rng.chance(500) {
                    for i in (0..self.clients.len()).filter(|&i| store_index(i) == s) {
                        self.clients[i].engine = None;
                        self.open(i);
                    }
                }
            }
        }
    }

    /// A call of client `i` failed with `code`: an injected commit failure,
    /// or a full or gone store that the pill shows. Anything else fails.
    pub(super) fn store_refusal(
        &mut self,
        i: usize,
        what: &str,
        code: ErrorCode,
    ) -> Result<(), String> {
        let t = &self.tracks[store_index(i)];
        let (full, gone) = (t.full_until != 0, t.gone_until != 0);
        let status = self.clients[i]
            .engine
            .as_ref()
            .map(|e| block_on(e.status()));
        self.stats.checks += 1;
        match code {
            ErrorCode::StorageFailed => Ok(()),
            ErrorCode::QuotaExceeded if full => {
                self.stats.lanes.quota += 1;
                match status {
                    Some(s) if s.code() != Some(ErrorCode::QuotaExceeded) => {
                        Err(self.fail(format!(
                            "{} {what} refused for a full store, but the status says {s:?}",
                            self.clients[i].label
                        )))
                    }
                    _ => Ok(()),
                }
            }
            ErrorCode::StoreGone if gone => {
                self.stats.lanes.store_gone += 1;
                match status {
                    Some(s)
                        if s.phase != tidesync::Phase::Error
                            || s.code() != Some(ErrorCode::StoreGone) =>
                    {
                        Err(self.fail(format!(
                            "{} {what} refused for a gone store, but the status says {s:?}",
                            self.clients[i].label
                        )))
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(self.fail(format!(
                "{} {what} failed with {code} (store full: {full}, gone: {gone})",
                self.clients[i].label
            ))),
        }
    }
}
