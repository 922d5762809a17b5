use super::*;

#[test]
fn stored_keys_hash_like_live_keys() {
    let keys = [
        IndexKey::Text(starling_fingerprint::Digest([3; 16])),
        IndexKey::Attachment(starling_fingerprint::Digest([4; 16])),
        IndexKey::Band(7, 0xdead_beef_1234),
    ];
    for key in keys {
        assert_eq!(key_hash(&key.to_bytes()), key.filter_hash());
    }
}

mod test_support {
    use super::super::*;
    use crate::config::StoreConfig;
    use crate::model::{Plan, Status};
    use crate::store::embedded::Embedded;

    /// A fingerprint set of its own per seed (text digest and min-hash).
    pub fn set(seed: u8) -> Submitted {
        let slots = std::array::from_fn(|i| u32::from(seed) * 1000 + i as u32);
        Submitted {
            version: 1,
            text: Some(starling_fingerprint::Digest([seed; 16])),
            fuzzy: Some(starling_fingerprint::MinHash { slots, shingles: 100 }),
            urls: vec![],
            domains: vec![],
            attachments: vec![],
        }
    }

    pub fn org(id: u32, plan: Plan) -> Organisation {
        Organisation {
            id,
            name: format!("org{id}"),
            status: Status::Active,
            plan,
            expires_at: 0,
            created_at: 0,
            credential_hash: [id as u8; 32],
        }
    }

    /// An engine over a new embedded store (kept while the directory lives).
    pub fn engine(trust: TrustConfig) -> (Engine<Embedded>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(&dir.path().join("s.redb"), 1 << 20).unwrap();
        let engine =
            Engine::new(store, EngineConfig { rule: MatchRule::default(), trust, store: StoreConfig::default() })
                .unwrap();
        (engine, dir)
    }
}

mod expiry_tests {
    use super::super::*;
    use super::test_support::{engine, org, set};
    use crate::model::Plan;

    #[test]
    fn entries_are_forgotten_with_their_postings_after_the_expiry() {
        let (engine, _dir) = engine(TrustConfig::default());
        let org = org(1, Plan::Feed);
        engine.organisations().write().put(org.clone());
        let day = 86_400;
        let mut pending = Pending::default();
        let mut w = engine.store().writer().unwrap();
        for (seed, at) in [(1u8, 0), (2u8, 60 * day)] {
            let input = ReportInput { set: set(seed), class: Class::Spam, reporter: "trap".into() };
            assert_eq!(engine.apply_report(&mut w, &org, &input, at, &mut pending).unwrap(), ReportOutcome::Recorded);
        }
        w.commit().unwrap();
        engine.publish(&pending);
        let text1 = IndexKey::Text(starling_fingerprint::Digest([1; 16]));
        assert_eq!(engine.store().reader().unwrap().postings(text1).unwrap().len(), 1);

        let mut w = engine.store().writer().unwrap();
        assert_eq!(engine.expire(&mut w, 95 * day, 100).unwrap(), 1, "only the first is 90 days old");
        w.commit().unwrap();
        let after = engine.check(&[set(1), set(2)], 95 * day, None).unwrap();
        assert!(after[0].matched.is_empty(), "the expired entry no longer matches");
        assert_eq!(after[1].outcome, Outcome::Spam, "the younger one is kept");
        assert!(engine.store().reader().unwrap().postings(text1).unwrap().is_empty());
    }
}

mod own_organisation_tests {
    use super::super::*;
    use super::test_support::{org, set};
    use crate::model::Plan;
    use crate::store::embedded::Embedded;

    fn engine(trust: TrustConfig) -> (Engine<Embedded>, tempfile::TempDir) {
        let (engine, dir) = super::test_support::engine(trust);
        for id in [1, 2] {
            engine.organisations().write().put(org(id, Plan::Subscription));
        }
        (engine, dir)
    }

    fn report(engine: &Engine<Embedded>, org_id: u32, seed: u8, class: Class, reporter: &str) {
        let mut pending = Pending::default();
        let mut w = engine.store().writer().unwrap();
        let input = ReportInput { set: set(seed), class, reporter: reporter.into() };
        assert_eq!(
            engine.apply_report(&mut w, &org(org_id, Plan::Subscription), &input, 100, &mut pending).unwrap(),
            ReportOutcome::Recorded
        );
        w.commit().unwrap();
        engine.publish(&pending);
    }

    /// One fresh user's report blocks nothing for the network as a whole
    /// (the shared default), but it does for that user's own organisation —
    /// and only for it; its own not-spam evidence outweighs it.
    #[test]
    fn an_organisations_own_reports_decide_for_it_alone() {
        let (engine, _dir) = engine(TrustConfig::default());
        report(&engine, 1, 1, Class::Spam, "ann");
        let outcome = |asker| {
            let a = engine.check(&[set(1)], 200, asker).unwrap().remove(0);
            (a.outcome, a.own)
        };
        assert_eq!(outcome(None), (Outcome::Clean, false), "the network as a whole");
        assert_eq!(outcome(Some(2)), (Outcome::Clean, false), "another organisation");
        assert_eq!(outcome(Some(1)), (Outcome::Spam, true), "the reporter's own organisation");
        assert_eq!(engine.check(&[set(1)], 200, Some(1)).unwrap()[0].confidence, 0.5);
        assert_eq!(engine.explain(&set(1), 200).unwrap().outcome, Outcome::Clean, "explain shows the network's view");

        // Another organisation's not-spam report does not undo it for org 1
        // (the network as a whole is still undecided) ...
        report(&engine, 2, 1, Class::Ham, "bob");
        assert_eq!(outcome(Some(1)), (Outcome::Spam, true));
        // ... but a colleague who says it is not spam does.
        report(&engine, 1, 1, Class::Ham, "cid");
        assert_eq!(outcome(Some(1)), (Outcome::Clean, false));
    }

    /// A report sent again (an agent killed between sending it and noting
    /// so) is recorded and counted once.
    #[test]
    fn a_repeated_report_counts_once() {
        let (engine, _dir) = engine(TrustConfig::default());
        report(&engine, 1, 1, Class::Spam, "ann");
        report(&engine, 1, 1, Class::Spam, "ann");
        let reporter = ReporterId::new(1, "ann");
        let r = engine.store().reader().unwrap();
        assert_eq!(r.reporter(reporter).unwrap().unwrap().reports, 1);
        let target = EntryId::of(&set(1)).unwrap();
        assert_eq!(r.reports(target).unwrap().len(), 1);
        drop(r);
        // A change of mind is a new report.
        report(&engine, 1, 1, Class::Ham, "ann");
        let r = engine.store().reader().unwrap();
        assert_eq!(r.reporter(reporter).unwrap().unwrap().reports, 2);
        assert_eq!(r.reports(target).unwrap()[0].1.class, Class::Ham);
    }

    #[test]
    fn own_threshold_zero_turns_it_off() {
        let (engine, _dir) = engine(TrustConfig { own_threshold: 0.0, ..TrustConfig::default() });
        report(&engine, 1, 1, Class::Spam, "ann");
        assert_eq!(engine.check(&[set(1)], 200, Some(1)).unwrap()[0].outcome, Outcome::Clean);
    }
}
