//! The etcd backend: the same [`Storage`] contract on an etcd v3 cluster.
//!
//! Keys are used as given. Guarded writes are etcd transactions comparing a key's
//! create or mod revision; a failed compare reads the key in the same transaction so the
//! error can say whether it is missing or modified.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchOptions,
};

use crate::{
    KeyValue, ListOptions, ListResult, Result, Revision, Storage, StorageError, WatchEvent,
    WatchStream,
};

/// A key no Skiff object uses; reads of it are the cheapest way to get a response header or
/// to ask whether a revision is still readable.
const PROBE_KEY: &[u8] = b"\0";

/// Tuning for [`EtcdStore`].
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Every unary request (and the creation of a watch) fails with
    /// [`StorageError::Unavailable`] if it has no answer by then. As with any timeout on a
    /// remote write, the write may still have been applied.
    pub request_timeout: Duration,
    /// How long establishing a connection to an endpoint may take.
    pub connect_timeout: Duration,
    /// How long [`Storage::ready`] waits for etcd.
    pub ready_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(1),
        }
    }
}

/// The etcd-backed store.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    opts: EtcdOptions,
    /// The highest revision this process knows to be compacted; a lower bound for
    /// [`Storage::compacted_revision`], which probes etcd for the rest.
    compacted: Arc<AtomicI64>,
}

/// An etcd failure sorted by what the storage contract makes of it.
enum Failure {
    Compacted,
    FutureRevision,
    Unavailable(String),
    Other(String),
}

fn classify(e: etcd_client::Error) -> Failure {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            if message.contains("required revision has been compacted") {
                return Failure::Compacted;
            }
            if message.contains("required revision is a future revision") {
                return Failure::FutureRevision;
            }
            // gRPC codes: 1 cancelled, 2 unknown (tonic reports transport failures so),
            // 4 deadline exceeded, 14 unavailable.
            match status.code() as i32 {
                1 | 2 | 4 | 14 => Failure::Unavailable(format!("etcd: {message}")),
                _ => Failure::Other(format!("etcd: {message}")),
            }
        }
        etcd_client::Error::TransportError(e) => Failure::Unavailable(format!("etcd: {e}")),
        etcd_client::Error::IoError(e) => Failure::Unavailable(format!("etcd: {e}")),
        etcd_client::Error::WatchError(e) => Failure::Unavailable(format!("etcd watch: {e}")),
        other => Failure::Other(format!("etcd: {other}")),
    }
}

/// For calls that name no revision, where revision errors cannot happen.
fn plain(f: Failure) -> StorageError {
    match f {
        Failure::Unavailable(m) => StorageError::Unavailable(m),
        Failure::Compacted => StorageError::Internal("etcd: unexpected compaction error".into()),
        Failure::FutureRevision => {
            StorageError::Internal("etcd: unexpected future revision error".into())
        }
        Failure::Other(m) => StorageError::Internal(m),
    }
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or nothing): every key from the start key on.
    vec![0]
}

fn convert_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    let key = String::from_utf8(kv.key().to_vec())
        .map_err(|_| StorageError::Internal("etcd returned a key that is not UTF-8".into()))?;
    Ok(KeyValue {
        key,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(resp: &TxnResponse) -> Result<Revision> {
    resp.header()
        .map(|h| h.revision())
        .ok_or_else(|| StorageError::Internal("etcd response without a header".into()))
}

/// The key-value a failed compare read back, if the key exists.
fn else_branch_kv(resp: &TxnResponse) -> Result<Option<KeyValue>> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(get) = op {
            return get.kvs().first().map(convert_kv).transpose();
        }
    }
    Err(StorageError::Internal(
        "etcd transaction answered without its read".into(),
    ))
}

impl EtcdStore {
    /// A store on the etcd cluster at `endpoints` (`http://host:port`), with default options.
    ///
    /// The connection is made lazily: this succeeds even when no server answers yet, and
    /// requests fail with [`StorageError::Unavailable`] until one does.
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        Self::connect_with(endpoints, EtcdOptions::default()).await
    }

    /// Like [`EtcdStore::connect`], with explicit options.
    pub async fn connect_with(endpoints: &[String], opts: EtcdOptions) -> Result<EtcdStore> {
        let connect = ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            // Keep-alives detect a dead server on otherwise silent watch streams.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let client = Client::connect(endpoints, Some(connect))
            .await
            .map_err(|e| plain(classify(e)))?;
        tracing::info!(?endpoints, "etcd store configured");
        Ok(EtcdStore {
            client,
            opts,
            compacted: Arc::new(AtomicI64::new(0)),
        })
    }

    /// Runs one request with the request timeout, on a clone of the client (clones share the
    /// connection).
    async fn call<T, F, Fut>(&self, f: F) -> std::result::Result<T, Failure>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.opts.request_timeout, f(self.client.clone())).await {
            Ok(result) => result.map_err(classify),
            Err(_) => Err(Failure::Unavailable(format!(
                "etcd did not answer within {:?}",
                self.opts.request_timeout
            ))),
        }
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse> {
        self.call(|mut c| async move { c.txn(txn).await })
            .await
            .map_err(plain)
    }

    /// Whether a read at `revision` is still possible (not compacted).
    async fn readable(&self, revision: Revision) -> Result<bool> {
        let opts = GetOptions::new().with_revision(revision).with_count_only();
        match self
            .call(|mut c| async move { c.get(PROBE_KEY, Some(opts)).await })
            .await
        {
            Ok(_) | Err(Failure::FutureRevision) => Ok(true),
            Err(Failure::Compacted) => Ok(false),
            Err(Failure::Unavailable(m)) => Err(StorageError::Unavailable(m)),
            Err(Failure::Other(m)) => Err(StorageError::Internal(m)),
        }
    }

    /// Turns a revision error for a request at `requested` into the contract's error, asking
    /// etcd for the numbers the error reports.
    async fn revision_error(&self, failure: Failure, requested: Revision) -> StorageError {
        match failure {
            Failure::Compacted => StorageError::Compacted {
                requested,
                compacted: self.compacted_revision().await.unwrap_or(0),
            },
            Failure::FutureRevision => StorageError::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            },
            Failure::Unavailable(m) => StorageError::Unavailable(m),
            Failure::Other(m) => StorageError::Internal(m),
        }
    }
}

#[async_trait]
impl Storage for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        let resp = self
            .call(|mut c| async move { c.get(key, None).await })
            .await
            .map_err(plain)?;
        resp.kvs().first().map(convert_kv).transpose()
    }

    async fn list(&self, opts: ListOptions) -> Result<ListResult> {
        let at = opts.revision.filter(|r| *r > 0).unwrap_or(0);
        let prefix = opts.prefix.as_bytes();
        let start = match opts.start_after.as_deref() {
            // The smallest key after `after` is `after` followed by a NUL byte.
            Some(after) if after >= opts.prefix.as_str() => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            // etcd rejects an empty key; NUL is the smallest non-empty one.
            _ if prefix.is_empty() => vec![0],
            _ => prefix.to_vec(),
        };
        let mut get = GetOptions::new().with_range(prefix_end(prefix));
        if opts.limit > 0 {
            get = get.with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        }
        if at > 0 {
            get = get.with_revision(at);
        }
        let resp = match self
            .call(|mut c| async move { c.get(start, Some(get)).await })
            .await
        {
            Ok(resp) => resp,
            Err(f) => return Err(self.revision_error(f, at).await),
        };
        let kvs = resp
            .kvs()
            .iter()
            .map(convert_kv)
            .collect::<Result<Vec<_>>>()?;
        let revision = if at > 0 {
            at
        } else {
            resp.header().map(|h| h.revision()).unwrap_or(0)
        };
        Ok(ListResult {
            kvs,
            revision,
            more: resp.more(),
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(StorageError::AlreadyExists(key.to_owned()));
        }
        let revision = header_revision(&resp)?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let txn = Txn::new()
            .when([
                // An absent key has mod revision 0; this keeps `expected == 0` from creating it.
                Compare::create_revision(key, CompareOp::Greater, 0),
                Compare::mod_revision(key, CompareOp::Equal, expected),
            ])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(match else_branch_kv(&resp)? {
                None => StorageError::NotFound(key.to_owned()),
                Some(kv) => StorageError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: kv.mod_revision,
                },
            });
        }
        let revision = header_revision(&resp)?;
        let create_revision = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|kv| kv.create_revision()),
                _ => None,
            })
            .ok_or_else(|| StorageError::Internal("etcd update without a previous value".into()))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                key,
                Some(etcd_client::DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if !resp.succeeded() {
            return Err(match (else_branch_kv(&resp)?, expected) {
                (None, _) => StorageError::NotFound(key.to_owned()),
                (Some(kv), Some(expected)) => StorageError::Conflict {
                    key: key.to_owned(),
                    expected,
                    current: kv.mod_revision,
                },
                (Some(_), None) => {
                    StorageError::Internal("etcd delete compare failed on an existing key".into())
                }
            });
        }
        let revision = header_revision(&resp)?;
        let prev = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(del) => del.prev_kvs().first().map(convert_kv),
                _ => None,
            })
            .transpose()?
            .ok_or_else(|| StorageError::Internal("etcd delete without a previous value".into()))?;
        Ok((prev, revision))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let start = after.max(0) + 1;
        // etcd reports a compacted start revision only after the watch was created; checking
        // first lets the call itself fail, as the contract asks. A compaction racing this
        // still ends the stream with Err(Compacted).
        if !self.readable(start).await? {
            return Err(StorageError::Compacted {
                requested: after,
                compacted: self.compacted_revision().await.unwrap_or(0),
            });
        }
        let options = WatchOptions::new()
            .with_prev_key()
            .with_start_revision(start);
        let (key, options) = if prefix.is_empty() {
            // NUL to NUL is etcd's spelling of "every key".
            (vec![0], options.with_range(vec![0]))
        } else {
            (prefix.as_bytes().to_vec(), options.with_prefix())
        };
        let stream = self
            .call(|mut c| async move { c.watch(key, Some(options)).await })
            .await
            .map_err(plain)?;
        let state = EtcdWatch {
            stream,
            pending: VecDeque::new(),
            last: after,
            finished: false,
            compacted: self.compacted.clone(),
        };
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move {
                let item = state.next_event().await?;
                Some((item, state))
            },
        )))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self
            .call(|mut c| async move { c.compact(revision, None).await })
            .await
        {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                tracing::debug!(revision, "compacted etcd");
                Ok(())
            }
            // Already compacted at or past `revision`: nothing left to do.
            Err(Failure::Compacted) => Ok(()),
            Err(f) => Err(self.revision_error(f, revision).await),
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        let resp = self
            .call(|mut c| async move {
                c.get(PROBE_KEY, Some(GetOptions::new().with_count_only()))
                    .await
            })
            .await
            .map_err(plain)?;
        resp.header()
            .map(|h| h.revision())
            .ok_or_else(|| StorageError::Internal("etcd response without a header".into()))
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        // etcd does not report its compaction point, and other clients may compact too, so
        // search for the oldest readable revision between what is known here and now.
        let known = self.compacted.load(Ordering::Acquire).max(1);
        let current = self.current_revision().await?;
        if known >= current || self.readable(known).await? {
            return Ok(self.compacted.load(Ordering::Acquire));
        }
        // Invariant: `lo` is not readable, `hi` is.
        let (mut lo, mut hi) = (known, current);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.readable(mid).await? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        self.compacted.fetch_max(hi, Ordering::AcqRel);
        Ok(hi)
    }

    async fn ready(&self) -> bool {
        let probe = async {
            let mut client = self.client.clone();
            client
                .get(PROBE_KEY, Some(GetOptions::new().with_count_only()))
                .await
        };
        matches!(
            tokio::time::timeout(self.opts.ready_timeout, probe).await,
            Ok(Ok(_))
        )
    }
}

/// The state of one etcd watch stream.
struct EtcdWatch {
    stream: etcd_client::WatchStream,
    pending: VecDeque<WatchEvent>,
    /// The revision of the last event delivered (or the watch's `after`).
    last: Revision,
    finished: bool,
    compacted: Arc<AtomicI64>,
}

impl EtcdWatch {
    async fn next_event(&mut self) -> Option<Result<WatchEvent>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.last = event.revision();
                return Some(Ok(event));
            }
            if self.finished {
                return None;
            }
            match self.stream.message().await {
                Ok(Some(resp)) => {
                    if resp.canceled() {
                        self.finished = true;
                        let compact_revision = resp.compact_revision();
                        if compact_revision > 0 {
                            self.compacted.fetch_max(compact_revision, Ordering::AcqRel);
                            return Some(Err(StorageError::Compacted {
                                requested: self.last,
                                compacted: compact_revision,
                            }));
                        }
                        return Some(Err(StorageError::Unavailable(format!(
                            "etcd cancelled the watch: {}",
                            resp.cancel_reason()
                        ))));
                    }
                    for event in resp.events() {
                        match convert_event(event) {
                            Ok(e) => self.pending.push_back(e),
                            Err(e) => {
                                self.finished = true;
                                return Some(Err(e));
                            }
                        }
                    }
                }
                Ok(None) => {
                    self.finished = true;
                    return Some(Err(StorageError::Unavailable(
                        "etcd closed the watch stream".into(),
                    )));
                }
                Err(e) => {
                    self.finished = true;
                    return Some(Err(plain(classify(e))));
                }
            }
        }
    }
}

fn convert_event(event: &etcd_client::Event) -> Result<WatchEvent> {
    let kv = event
        .kv()
        .ok_or_else(|| StorageError::Internal("etcd watch event without a key".into()))?;
    let kv = convert_kv(kv)?;
    let prev = event.prev_kv().map(convert_kv).transpose()?;
    Ok(match event.event_type() {
        EventType::Put => WatchEvent::Put { kv, prev },
        EventType::Delete => {
            let revision = kv.mod_revision;
            let prev = prev.unwrap_or_else(|| {
                // etcd omits the previous value when it is no longer retained.
                tracing::warn!(key = %kv.key, revision, "etcd delete event without a previous value");
                KeyValue {
                    key: kv.key.clone(),
                    value: Vec::new(),
                    create_revision: 0,
                    mod_revision: 0,
                }
            });
            WatchEvent::Delete { prev, revision }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
