//! The invariants, checked after every step and after the final healing:
//! exactly once and FIFO on the server, the stores against what the
//! terminals did, the subscribers' pictures, convergence.

use super::*;

impl<S: SimServer> Sim<S> {
    /// Checks what changed in store `s` since the last check: nothing left
    /// the outbox without a trace in the audit, a dead letter only by a
    /// person's discard (or an ack of what the server did apply); every new local mutation is stamped after every
    /// stamp the terminal had seen and after the server state it was built
    /// on; each policy decided what its meaning says.
    pub(super) fn check_store(&mut self, s: usize) -> Result<(), String> {
        let store = self.clients[s].store.clone();
        let (keys, seen) = {
            let mut net = self.clients[s].net.lock().unwrap();
            (
                std::mem::take(&mut net.seen_keys),
                std::mem::take(&mut net.conflicts_seen),
            )
        };
        let commits = store.commits();
        if commits == self.tracks[s].commits {
            return Ok(()); // nothing was committed, nothing changed
        }
        self.tracks[s].commits = commits;
        let name = self.clients[s].name.clone();
        let inner = store.inner();
        let audit = block_on(inner.audit(self.tracks[s].audit_seq, usize::MAX)).expect("audit");
        let outbox = block_on(inner.outbox()).expect("outbox");
        let entries: BTreeMap<&OpId, &OutboxEntry> =
            outbox.iter().map(|e| (&e.mutation.op_id, e)).collect();
        // Every stamp of a server state this terminal stored.
        let mut floor = self.tracks[s].floor;
        for key in &keys {
            if let Some(st) = block_on(inner.get(key))
                .expect("get")
                .and_then(|r| r.server)
            {
                floor = floor.max(st.updated_at);
            }
        }
        let mut events: BTreeMap<&OpId, Vec<&AuditEvent>> = BTreeMap::new();
        let mut queued = Vec::new();
        for a in &audit {
            self.tracks[s].audit_seq = self.tracks[s].audit_seq.max(a.seq);
            if let AuditEvent::DeadLettered { code } = &a.event {
                let l = &mut self.stats.lanes;
                match code {
                    ErrorCode::RetriesExhausted => l.dead_retries_exhausted += 1,
                    ErrorCode::EventInvalid => l.dead_validation += 1,
                    ErrorCode::PolicyViolation => l.dead_policy += 1,
                    _ => l.dead_other += 1,
                }
            }
            if let Some(op) = &a.op_id {
                events.entry(op).or_default().push(&a.event);
                if a.event == AuditEvent::Queued {
                    queued.push(op);
                }
            }
        }
        // Departures from the outbox, and dead letters.
        let t = &self.tracks[s];
        let mut problem = None;
        for (op, &was_dead) in &t.outbox {
            let evs = events.get(op);
            match entries.get(op) {
                None => {
                    let settled = evs.is_some_and(|v| {
                        v.iter().any(|e| {
                            matches!(
                                e,
                                AuditEvent::Applied { .. }
                                    | AuditEvent::Duplicate { .. }
                                    | AuditEvent::Superseded { .. }
                                    | AuditEvent::ConflictOpened
                                    | AuditEvent::Discarded
                                    | AuditEvent::ReplacedBy { .. }
                            )
                        })
                    });
                    if !settled {
                        problem = Some(format!(
                            "{name}: op {op} left the outbox with no trace in the audit ({evs:?})"
                        ));
                    } else if was_dead && !t.discarded.contains(op) {
                        // Or it had reached the server after all (a late
                        // request) and the change feed said so.
                        let acked = evs.is_some_and(|v| {
                            v.iter().any(|e| {
                                matches!(
                                    e,
                                    AuditEvent::Applied { .. } | AuditEvent::Duplicate { .. }
                                )
                            })
                        });
                        if !(acked && self.applied.contains(&(name.clone(), op.clone()))) {
                            problem = Some(format!(
                                "{name}: dead letter {op} dropped without a person's discard ({evs:?})"
                            ));
                        }
                    }
                }
                Some(e) if was_dead && !is_dead(e) && !t.retried.contains(op) => {
                    problem = Some(format!(
                        "{name}: dead letter {op} back in the queue without a person's retry"
                    ));
                }
                _ => {}
            }
            if problem.is_some() {
                break;
            }
        }
        for e in outbox.iter().filter(|e| is_dead(e)) {
            let op = &e.mutation.op_id;
            let was_dead = t.outbox.get(op).copied().unwrap_or(false);
            let audited = events.get(op).is_some_and(|v| {
                v.iter()
                    .any(|e| matches!(e, AuditEvent::DeadLettered { .. }))
            });
            if !was_dead && !audited && problem.is_none() {
                problem = Some(format!("{name}: {op} dead-lettered without an audit entry"));
            }
        }
        // A write held for review never reaches the server while held.
        for e in &outbox {
            if matches!(e.state, OutboxState::Held { .. }) {
                self.stats.checks += 1;
                if problem.is_none()
                    && self
                        .applied
                        .contains(&(name.clone(), e.mutation.op_id.clone()))
                {
                    problem = Some(format!(
                        "{name}: {} is held for review but the server applied it",
                        e.mutation.op_id
                    ));
                }
            }
        }
        if let Some(p) = problem {
            return Err(self.fail(p));
        }
        // New local mutations are stamped after everything seen.
        for op in queued {
            let Some(e) = entries.get(op) else {
                continue;
            };
            let m = &e.mutation;
            self.stats.checks += 1;
            if m.hlc <= floor {
                return Err(self.fail(format!(
                    "{name}: {op} on {} stamped {}, not after {floor}, a stamp this terminal had seen",
                    m.key(),
                    m.hlc
                )));
            }
            if let Some(rec) = block_on(inner.get(&m.key())).expect("get") {
                let bases = [
                    rec.server.as_ref(),
                    rec.chain_base.as_ref().and_then(|b| b.state()),
                ];
                for b in bases.into_iter().flatten() {
                    if b.updated_at >= m.hlc {
                        return Err(self.fail(format!(
                            "{name}: {op} on {} stamped {}, not after the server state it was built on (version {}, {})",
                            m.key(), m.hlc, b.version, b.updated_at
                        )));
                    }
                }
            }
            floor = m.hlc;
        }
        self.tracks[s].floor = floor;
        // Each policy decided what it means.
        let mut used: BTreeMap<OpId, usize> = BTreeMap::new();
        let decision = |op: &OpId, used: &BTreeMap<OpId, usize>| -> Option<AuditEvent> {
            events
                .get(op)?
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        AuditEvent::Rebased { .. }
                            | AuditEvent::Superseded { .. }
                            | AuditEvent::ConflictOpened
                    )
                })
                .nth(used.get(op).copied().unwrap_or(0))
                .map(|e| (*e).clone())
        };
        let mut conflicts = None;
        for c in &seen {
            let head = &c.chain[0];
            if decision(&head.op_id, &used).is_none() {
                continue; // not committed: the conflict comes back
            }
            let decided: Vec<Option<AuditEvent>> =
                c.chain.iter().map(|m| decision(&m.op_id, &used)).collect();
            for m in &c.chain {
                *used.entry(m.op_id.clone()).or_default() += 1;
            }
            let policy = policy_of(&head.collection);
            let expect = oracle(policy, c);
            let sv = c.server.as_ref().map_or(0, |s| s.version);
            let rebased = |d: &Option<AuditEvent>| matches!(d, Some(AuditEvent::Rebased { onto }) if *onto == sv);
            let superseded = |d: &Option<AuditEvent>| matches!(d, Some(AuditEvent::Superseded { by_version }) if *by_version == sv);
            self.stats.checks += 1;
            let ok = match &expect {
                Expect::Any => true,
                Expect::Rebase => decided.iter().all(rebased),
                Expect::SupersedeHead => {
                    superseded(&decided[0]) && decided[1..].iter().all(rebased)
                }
                Expect::SupersedeAll => decided.iter().all(superseded),
                Expect::Manual(_) => decided
                    .iter()
                    .all(|d| matches!(d, Some(AuditEvent::ConflictOpened))),
            };
            if !ok {
                return Err(self.fail(format!(
                    "{name}: {policy:?} decided {decided:?} for {} (chain {:?}), but it means {expect:?}: base {:?}, server {:?}",
                    head.key(),
                    c.chain.iter().map(|m| (&m.op_id, m.kind, &m.payload, m.hlc)).collect::<Vec<_>>(),
                    c.base,
                    c.server
                )));
            }
            if let Expect::Manual(Some(want)) = &expect {
                let all = conflicts
                    .get_or_insert_with(|| block_on(inner.conflicts()).expect("conflicts"));
                if let Some(rec) = all.iter().find(|r| r.key == head.key()) {
                    if rec.mutations.first().map(|m| &m.op_id) == Some(&head.op_id)
                        && &rec.fields != want
                    {
                        return Err(self.fail(format!(
                            "{name}: conflict on {} names fields {:?}, but {want:?} overlap",
                            head.key(),
                            rec.fields
                        )));
                    }
                }
            }
            let l = &mut self.stats.lanes;
            match (policy, &expect) {
                (ConflictPolicy::MergeThreeWay, Expect::Rebase) => l.merge_disjoint += 1,
                (ConflictPolicy::MergeThreeWay, Expect::Manual(Some(f))) if !f.is_empty() => {
                    l.merge_overlap += 1
                }
                (ConflictPolicy::LastWriteWins, Expect::Rebase) => l.lww_local_wins += 1,
                (ConflictPolicy::LastWriteWins, Expect::SupersedeHead) => l.lww_server_wins += 1,
                (ConflictPolicy::ServerWins, _) => l.server_wins += 1,
                (ConflictPolicy::ManualResolve, _) => l.manual += 1,
                _ => {}
            }
        }
        self.tracks[s].outbox = outbox
            .iter()
            .map(|e| (e.mutation.op_id.clone(), is_dead(e)))
            .collect();
        Ok(())
    }

    pub(super) fn partition_audit(&self, branch: &str) -> Vec<tidesync_server::storage::AuditRow> {
        self.server
            .service()
            .store()
            .audit(&Partition::new(&self.tenant, branch))
            .expect("server audit")
    }

    pub(super) fn drain_events(&mut self) {
        for c in &mut self.clients {
            if let Some(rx) = c.events.as_mut() {
                while let Ok(ev) = rx.try_recv() {
                    match ev {
                        tidesync::Event::Changed { key, entity } => {
                            c.seen.insert(key, entity);
                        }
                        // Ids only: a subscriber reads them, as an app does.
                        tidesync::Event::Changes { collection, ids } => {
                            let keys: Vec<EntityKey> = ids
                                .into_iter()
                                .map(|id| EntityKey::new(collection.clone(), id))
                                .collect();
                            let recs = block_on(c.store.inner().get_many(&keys)).expect("read");
                            for (key, rec) in keys.into_iter().zip(recs) {
                                c.seen.insert(key, rec.and_then(|r| r.view));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Checked after every step.
    pub(super) fn check_step(&mut self) -> Result<(), String> {
        self.drain_events();
        self.check_server()?;
        self.check_clients()?;
        for s in 0..self.tracks.len() {
            self.check_store(s)?;
        }
        Ok(())
    }

    /// The server's audit since the last check.
    pub(super) fn check_server(&mut self) -> Result<(), String> {
        // Every op applied at most once, and in FIFO order per entity and terminal.
        for branch in BRANCHES {
            let audit = self.partition_audit(branch);
            let seen = self.audit_seen.get(branch).copied().unwrap_or(0);
            for a in &audit[seen..] {
                if let (Some(op), Some(t)) = (&a.op_id, &a.terminal) {
                    self.stats.checks += 1;
                    if !self.applied.insert((t.clone(), op.clone())) {
                        return Err(
                            self.fail(format!("op {op} of {t} applied twice on the server"))
                        );
                    }
                    let k = (a.key.clone(), branch.to_string(), t.clone());
                    if let Some(prev) = self.last_hlc.get(&k) {
                        if *prev >= a.hlc {
                            return Err(self.fail(format!(
                                "FIFO broken on {}: {t} applied {} after {}",
                                a.key, a.hlc, prev
                            )));
                        }
                    }
                    self.last_hlc.insert(k, a.hlc);
                    self.stats.applied += 1;
                }
                // Append-only never updates: a sale has one version.
                if a.key.collection == "sales" && a.version != 1 {
                    return Err(self.fail(format!(
                        "append-only {} updated to version {}",
                        a.key, a.version
                    )));
                }
            }
            self.audit_seen.insert(branch.to_string(), audit.len());
        }
        Ok(())
    }

    /// Each engine's cursor and pill.
    pub(super) fn check_clients(&mut self) -> Result<(), String> {
        // Cursors never go back, across restarts too.
        for i in 0..self.clients.len() {
            let Some(engine) = self.clients[i].engine.as_ref() else {
                continue;
            };
            let cursor = block_on(engine.meta()).cursor;
            if cursor < self.clients[i].last_cursor {
                return Err(self.fail(format!(
                    "{} cursor went back: {:?} -> {:?}",
                    self.clients[i].label, self.clients[i].last_cursor, cursor
                )));
            }
            // The pill's counts match the queues.
            let status = block_on(engine.status());
            let outbox = block_on(engine.outbox());
            let dead = outbox
                .iter()
                .filter(|e| matches!(e.state, OutboxState::DeadLetter { .. }))
                .count();
            let held = outbox
                .iter()
                .filter(|e| matches!(e.state, OutboxState::Held { .. }))
                .count();
            if status.pending != outbox.len() - dead - held
                || status.dead_letters != dead
                || status.held != held
            {
                return Err(self.fail(format!("status {status:?} disagrees with the outbox")));
            }
            self.stats.checks += 2;
            self.clients[i].last_cursor = cursor;
        }
        // One definition of "pending": every stored view counts exactly its
        // entity's pending (not dead-lettered) outbox entries, and is
        // `conflicted` exactly while a conflict is open. Read from the
        // store, so it holds for engines that share one too.
        let mut checks = 0;
        for c in self.clients.iter().filter(|c| !c.shared_store) {
            let store = c.store.inner();
            let mut pending: BTreeMap<EntityKey, u32> = BTreeMap::new();
            for e in block_on(store.outbox()).expect("outbox") {
                if e.state == OutboxState::Pending {
                    *pending.entry(e.mutation.key()).or_default() += 1;
                }
            }
            let conflicted: BTreeSet<EntityKey> = block_on(store.conflicts())
                .expect("conflicts")
                .into_iter()
                .map(|c| c.key)
                .collect();
            for col in block_on(store.collections()).expect("collections") {
                for r in block_on(store.scan(&col)).expect("scan") {
                    let Some(v) = &r.view else { continue };
                    let want = pending.remove(&r.key).unwrap_or(0);
                    checks += 1;
                    if v.pending != want || v.conflicted != conflicted.contains(&r.key) {
                        return Err(self.fail(format!(
                            "{}: the view of {} says pending {} conflicted {}, the outbox holds {want} pending (conflict open: {})",
                            c.name,
                            r.key,
                            v.pending,
                            v.conflicted,
                            conflicted.contains(&r.key)
                        )));
                    }
                }
            }
            // Pending mutations of an entity with no view are possible (a
            // delete queued for one the server no longer has): nothing shows
            // them but the status and the outbox.
        }
        self.stats.checks += checks;
        Ok(())
    }

    /// After healing: convergence and accountability.
    pub(super) fn check_final(&mut self) -> Result<(), String> {
        // A subscriber saw every change to the local view.
        self.drain_events();
        for c in self.clients.iter().filter(|c| !c.shared_store) {
            let mut stored: BTreeMap<EntityKey, Option<LocalEntity>> = BTreeMap::new();
            for col in block_on(c.store.collections()).expect("collections") {
                for r in block_on(c.store.scan(&col)).expect("scan") {
                    stored.insert(r.key.clone(), r.view);
                }
            }
            for key in stored.keys().chain(c.seen.keys()).collect::<BTreeSet<_>>() {
                let a = stored.get(key).cloned().flatten();
                let b = c.seen.get(key).cloned().flatten();
                self.stats.checks += 1;
                if a != b {
                    return Err(self.fail(format!(
                        "{}: subscriber missed a change of {key}: store {a:?}, events {b:?}",
                        c.name
                    )));
                }
            }
        }
        // Reconcile finds nothing to repair once converged.
        for i in 0..self.clients.len() {
            let engine = self.clients[i].engine.as_ref().unwrap();
            let r = block_on(engine.reconcile(None))
                .map_err(|e| self.fail(format!("reconcile: {e}")))?;
            self.stats.checks += 1;
            if r.pulled != 0 {
                let audit = block_on(engine.audit(0, usize::MAX)).unwrap_or_default();
                let repairs: Vec<String> = audit
                    .iter()
                    .filter(|a| matches!(a.event, AuditEvent::Reconciled { .. }))
                    .map(|a| format!("{} {:?}", a.key, a.event))
                    .collect();
                return Err(self.fail(format!(
                    "{} needed reconcile repairs after healing: {r:?}: {repairs:?}",
                    self.clients[i].label
                )));
            }
        }
        for i in 0..self.clients.len() {
            let c = &self.clients[i];
            let engine = c.engine.as_ref().unwrap();
            // Converged with the server, collection by collection.
            let mut server_view: BTreeMap<EntityKey, Fields> = BTreeMap::new();
            let mut after = None;
            loop {
                let page = self
                    .server
                    .service()
                    .snapshot(&c.ctx, SnapshotRequest { after, limit: 1000 })
                    .map_err(|e| self.fail(format!("snapshot: {e:?}")))?;
                for s in page.entities {
                    server_view.insert(s.key(), s.fields);
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            let mut local_view: BTreeMap<EntityKey, Fields> = BTreeMap::new();
            for col in COLLECTIONS {
                for e in
                    block_on(engine.query(col)).map_err(|e| self.fail(format!("query: {e}")))?
                {
                    if e.pending != 0 || e.conflicted {
                        return Err(self.fail(format!(
                            "{}: {}/{} still pending after healing",
                            c.name, col, e.id
                        )));
                    }
                    local_view.insert(EntityKey::new(col, e.id), e.fields);
                }
            }
            self.stats.checks += 1;
            if server_view != local_view {
                let diff: Vec<String> = server_view
                    .keys()
                    .chain(local_view.keys())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .filter(|k| server_view.get(*k) != local_view.get(*k))
                    .map(|k| {
                        format!(
                            "{k}: server {:?} local {:?}",
                            server_view.get(k),
                            local_view.get(k)
                        )
                    })
                    .collect();
                return Err(self.fail(format!(
                    "{} did not converge:\n{}",
                    c.name,
                    diff.join("\n")
                )));
            }
            // Every local mutation is accounted for.
            let audit = block_on(engine.audit(0, usize::MAX))
                .map_err(|e| self.fail(format!("audit: {e}")))?;
            let mut fate: BTreeMap<OpId, Vec<&AuditEvent>> = BTreeMap::new();
            for a in &audit {
                if let Some(op) = &a.op_id {
                    fate.entry(op.clone()).or_default().push(&a.event);
                }
            }
            for (op, events) in &fate {
                if !matches!(events.first(), Some(AuditEvent::Queued)) {
                    continue;
                }
                let applied_here = events.iter().any(|e| {
                    matches!(e, AuditEvent::Applied { .. } | AuditEvent::Duplicate { .. })
                });
                let on_server = self.applied.contains(&(c.name.clone(), op.clone()));
                let settled_otherwise = events.iter().any(|e| {
                    matches!(
                        e,
                        AuditEvent::Superseded { .. }
                            | AuditEvent::ConflictResolved { .. }
                            | AuditEvent::Discarded
                    )
                });
                self.stats.checks += 1;
                if on_server != applied_here {
                    return Err(self.fail(format!(
                        "{}: op {op} on server: {on_server}, acknowledged locally: {applied_here} ({events:?})",
                        c.name
                    )));
                }
                if !on_server && !settled_otherwise {
                    return Err(self.fail(format!("{}: op {op} was lost: {events:?}", c.name)));
                }
            }
            // And the server applied nothing this terminal does not know it queued.
            for (t, op) in &self.applied {
                if t == &c.name && !fate.contains_key(op) {
                    return Err(self.fail(format!("server applied {op} that {t} never queued")));
                }
            }
        }
        // Each entity's version counts its applied writes.
        for branch in BRANCHES {
            let audit = self.partition_audit(branch);
            let mut counts: BTreeMap<EntityKey, u64> = BTreeMap::new();
            for a in &audit {
                *counts.entry(a.key.clone()).or_default() += 1;
                self.stats.checks += 1;
                if counts[&a.key] != a.version {
                    return Err(self.fail(format!(
                        "{branch}:{} version {} after {} writes",
                        a.key, a.version, counts[&a.key]
                    )));
                }
            }
        }
        Ok(())
    }
}
