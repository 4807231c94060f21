//! One pact file per edge, built one interaction (and one mock server) at a time, then
//! compared with the committed copy in `contracts/pacts/`.
//!
//! Shared by the consumers' pact tests (`services/*/tests/pact_consumer.rs` include it with
//! `#[path]`): HTTP interactions against a mock server, message interactions through
//! [`PactFile::builder`].

use std::path::{Path, PathBuf};

use pact_consumer::builders::InteractionBuilder;
use pact_consumer::mock_server::{StartMockServer, ValidatingMockServer};
use pact_consumer::prelude::*;

/// Set to `1` to rewrite the committed pacts from what the tests wrote.
pub const UPDATE_ENV: &str = "GAUNTLET_UPDATE_PACTS";

/// The pact of one consumer → provider edge, being written.
pub struct PactFile {
    consumer: &'static str,
    provider: &'static str,
    scratch: tempfile::TempDir,
}

impl PactFile {
    pub fn new(consumer: &'static str, provider: &'static str) -> Self {
        Self { consumer, provider, scratch: tempfile::tempdir().expect("a scratch directory for the pact") }
    }

    /// Starts a mock server for one interaction; dropping it checks that the consumer
    /// made exactly the expected request and merges the interaction into the pact.
    pub async fn interaction(
        &self,
        description: &str,
        build: impl FnOnce(&mut InteractionBuilder),
    ) -> Box<dyn ValidatingMockServer> {
        let mut pact = self.builder();
        pact.interaction(description, "", |mut i| {
            build(&mut i);
            i
        });
        pact.start_mock_server(None, None)
    }

    /// A V4 pact builder of this edge that writes into the scratch directory (merged
    /// with what is there): for message interactions, whose pact is written when the
    /// builder's `messages()` iterator is dropped.
    pub fn builder(&self) -> PactBuilder {
        let mut pact = PactBuilder::new_v4(self.consumer, self.provider);
        pact.with_output_dir(self.scratch.path());
        pact
    }

    fn file_name(&self) -> String {
        format!("{}-{}.json", self.consumer, self.provider)
    }

    /// Fails when the committed pact differs from the one the tests just wrote.
    pub fn check_committed(self) {
        let written = self.scratch.path().join(self.file_name());
        let fresh = read_json(&written);
        let committed_path = committed_dir().join(self.file_name());
        if std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1") {
            std::fs::create_dir_all(committed_dir()).expect("creating contracts/pacts");
            let text = serde_json::to_string_pretty(&fresh).expect("a pact is plain JSON") + "\n";
            std::fs::write(&committed_path, text).expect("writing the committed pact");
            return;
        }
        assert!(
            committed_path.exists(),
            "{} is missing: run the consumer tests with {UPDATE_ENV}=1 and commit it",
            committed_path.display()
        );
        let committed = read_json(&committed_path);
        if committed != fresh {
            // Keep what the tests wrote, so the difference can be looked at.
            let name = self.file_name();
            let kept = self.scratch.keep().join(name);
            panic!(
                "{} is stale: the consumer tests now write a different pact ({}; compare with `gauntlet \
                 contracts diff`). Run them with {UPDATE_ENV}=1 and commit the result",
                committed_path.display(),
                kept.display()
            );
        }
    }
}

/// `contracts/pacts/` at the root of the repository.
pub fn committed_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contracts/pacts");
    dir.canonicalize().unwrap_or(dir)
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}
