//! The remote pool's wire: the key layout of a pool, the fields of a task
//! and a result entry, the Lua scripts, and parsing of stream replies.
//!
//! Keys of pool `P` in namespace `ns` (all share the hash tag `{ns:P}`):
//!
//! | key | type | what |
//! |---|---|---|
//! | `mp:{ns:P}:config` | hash | `lease_ms`, `max_deliveries` (set by callers, read by workers) |
//! | `mp:{ns:P}:workers` | hash | worker id → `build pid host fns` |
//! | `mp:{ns:P}:w:<worker>` | string, PX lease | the worker is alive |
//! | `mp:{ns:P}:t:<build>` | stream, group `w` | task chunks for workers of one build |
//! | `mp:{ns:P}:l:<caller>` | string (its key ttl, ms), PX ttl | the caller is alive (its results are wanted) |
//! | `mp:{ns:P}:r:<caller>` | stream | the caller's results, read by cursor |
//! | `mp:{ns:P}:d:<caller>:<map>` | bitmap | chunks of one call already finished |
//!
//! A task entry: `f` function name, `g` its signature's fingerprint, `c` caller, `m` map, `k` chunk number,
//! `s` first input position, `n` call count, `p` encoded arguments. A
//! result entry: `m`, then per chunk `s`, `n`, and `b` (the chunk's encoded
//! outcomes), `e` (an encoded `TaskError` for every call) or `x` (the
//! delivery count of a chunk given up as lost).

use redis::Value;

/// The consumer group of every task stream.
pub(crate) const GROUP: &str = "w";

/// Creates the task stream `tasks` and its consumer group (from the
/// stream's start, so entries added before any worker came are delivered);
/// one that exists already is fine.
pub(crate) fn create_group(c: &mut redis::Connection, tasks: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<Value> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(tasks)
        .arg(GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query(c);
    match created {
        Err(e) if e.code() != Some("BUSYGROUP") => Err(e),
        _ => Ok(()),
    }
}

/// One stream entry: its id and its fields.
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub(crate) fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    pub(crate) fn text(&self, name: &[u8]) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    pub(crate) fn number(&self, name: &[u8]) -> Option<u64> {
        self.text(name).and_then(|v| v.parse().ok())
    }
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// The entries of an `XRANGE`/`XCLAIM` reply (a list of `[id, fields]`;
/// deleted entries, `[id, nil]`, are skipped).
pub(crate) fn entries(v: &Value) -> Vec<Entry> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else {
                return None;
            };
            let id = String::from_utf8(bytes(pair.first()?)?).ok()?;
            let Value::Array(flat) = pair.get(1)? else {
                return None;
            };
            let fields = flat
                .chunks(2)
                .filter_map(|kv| Some((bytes(kv.first()?)?, bytes(kv.get(1)?)?)))
                .collect();
            Some(Entry { id, fields })
        })
        .collect()
}

/// The entries of an `XREAD`/`XREADGROUP` reply for one stream (nil on a
/// timeout: none).
pub(crate) fn read_reply(v: &Value) -> Vec<Entry> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .flat_map(|s| match s {
                Value::Array(pair) => pair.get(1).map(entries).unwrap_or_default(),
                _ => Vec::new(),
            })
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// Finishes chunks: for each, if its caller is alive and no result of it
/// was stored yet (first to set its bit in the map's bitmap), keeps its
/// result; the kept results of one map go out as one entry of the caller's
/// result stream (`m`, then `s`, `n` and the kind's field per chunk). Then
/// every task entry is acknowledged and deleted, kept or not. The result
/// keys expire after the caller's own key ttl (the value of its `l:` key),
/// so a caller's `key_ttl` holds whatever the worker was started with.
///
/// KEYS[1] the task stream. ARGV: prefix, group, default ttl (ms), then 8
/// per chunk: entry id, caller, map, chunk number, first, count, kind
/// (`b`/`e`/`x`), body. Returns how many results were stored.
pub(crate) const FINISH: &str = r"
local prefix, group = ARGV[1], ARGV[2]
local stored, ids, ttls, out, order = 0, {}, {}, {}, {}
local i = 4
while i + 7 <= #ARGV do
  local caller, map = ARGV[i+1], ARGV[i+2]
  local ttl = ttls[caller]
  if ttl == nil then
    ttl = tonumber(redis.call('GET', prefix .. 'l:' .. caller) or '') or false
    if ttl and ttl < 1000 then ttl = tonumber(ARGV[3]) end
    ttls[caller] = ttl
  end
  if ttl then
    local done = prefix .. 'd:' .. caller .. ':' .. map
    if redis.call('SETBIT', done, tonumber(ARGV[i+3]), 1) == 0 then
      local key = caller .. ' ' .. map
      local f = out[key]
      if not f then
        f = {'m', map}
        out[key] = f
        table.insert(order, {caller, key, done, ttl})
      end
      table.insert(f, 's'); table.insert(f, ARGV[i+4])
      table.insert(f, 'n'); table.insert(f, ARGV[i+5])
      table.insert(f, ARGV[i+6]); table.insert(f, ARGV[i+7])
      stored = stored + 1
    end
  end
  table.insert(ids, ARGV[i])
  i = i + 8
end
for _, o in ipairs(order) do
  local res = prefix .. 'r:' .. o[1]
  redis.call('XADD', res, '*', unpack(out[o[2]]))
  redis.call('PEXPIRE', res, o[4])
  redis.call('PEXPIRE', o[3], o[4])
end
if #ids > 0 then
  redis.call('XACK', KEYS[1], group, unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
end
return stored
";

/// Keeps a worker's leases on the entries it still owns (resets their idle
/// time without counting a delivery), and returns the ids it no longer
/// owns (another worker reclaimed them: its result will be the one kept,
/// or this one if it finishes first; the bitmap keeps one).
///
/// KEYS[1] the task stream. ARGV: group, worker id, entry ids….
pub(crate) const RENEW: &str = r"
local group, me = ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == me then
    redis.call('XCLAIM', KEYS[1], group, me, 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
";

/// Withdraws task entries no worker has taken yet (not in the group's
/// pending list); returns how many were withdrawn.
///
/// KEYS[1] the task stream. ARGV: group, entry ids….
pub(crate) const WITHDRAW: &str = r"
local n = 0
for i = 2, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if not p[1] then
    n = n + redis.call('XDEL', KEYS[1], ARGV[i])
  end
end
return n
";

/// Whether a task entry is still waiting for a worker (present, and not in
/// the pending list). KEYS[1] the task stream; ARGV: group, entry id.
pub(crate) const WAITING: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if p[1] then return 0 end
local e = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
if e[1] then return 1 end
return 0
";

/// 16 random hex digits: ids of workers, callers and maps.
pub(crate) fn random_id() -> String {
    let mut b = [0u8; 8];
    let _ = crate::sys::random::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a worker publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerInfo {
    /// The worker's id (random, per start).
    pub id: String,
    /// Its executable's build id (SHA-256, hex).
    pub build: String,
    /// Its pid, in its own pid namespace.
    pub pid: u32,
    /// Its host name.
    pub host: String,
    /// The functions it can run.
    pub functions: Vec<String>,
}

impl WorkerInfo {
    pub(crate) fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.build,
            self.pid,
            self.host,
            self.functions.join(",")
        )
    }

    pub(crate) fn decode(id: &str, s: &str) -> Option<WorkerInfo> {
        let mut parts = s.splitn(4, ' ');
        Some(WorkerInfo {
            id: id.to_owned(),
            build: parts.next()?.to_owned(),
            pid: parts.next()?.parse().ok()?,
            host: parts.next()?.to_owned(),
            functions: parts
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// This machine's host name (for [`WorkerInfo`]).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}
