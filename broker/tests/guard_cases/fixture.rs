// The broker and identities both protocols' cases start from: a gateway, two of its
// nodes and a service, and a broker (`start_broker`, from the including test) that
// knows them. Included by `v4.rs` and `v5.rs`.
use gridwatch_broker::{Auth, BrokerConfig, Credentials, CredentialsFile, EmbeddedBroker, GuardConfig, Role};
use std::path::{Path, PathBuf};
use std::sync::Arc;

// Each protocol's cases use a part of it.
#[allow(dead_code)]
struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    broker: EmbeddedBroker,
    gw_secret: String,
    l1_secret: String,
    l2_secret: String,
    service_secret: String,
}

fn provision(path: &Path) -> (String, String, String, String) {
    let mut file = CredentialsFile::default();
    let gw = file.add("gw-1", Role::Gateway, None, 1).unwrap();
    let l1 = file.add("L-1", Role::Node, Some("gw-1"), 1).unwrap();
    let l2 = file.add("L-2", Role::Node, Some("gw-1"), 1).unwrap();
    let service = file.add("reader", Role::Service, None, 1).unwrap();
    file.save(path).unwrap();
    (gw, l1, l2, service)
}

fn start_named(name: &str, guard: impl FnOnce(Arc<Credentials>) -> GuardConfig, links: &[&str]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.toml");
    let (gw_secret, l1_secret, l2_secret, service_secret) = provision(&path);
    let credentials = Arc::new(Credentials::open(&path).unwrap());
    let config = BrokerConfig {
        guard: guard(credentials),
        ..BrokerConfig::default()
    };
    let broker = start_broker(name, &config, links);
    Fixture {
        _dir: dir,
        path,
        broker,
        gw_secret,
        l1_secret,
        l2_secret,
        service_secret,
    }
}

fn with_credentials(credentials: Arc<Credentials>) -> GuardConfig {
    GuardConfig {
        auth: Auth::Credentials {
            credentials,
            nodes_of: None,
        },
        reload_every: Duration::from_millis(50),
        ..GuardConfig::default()
    }
}

