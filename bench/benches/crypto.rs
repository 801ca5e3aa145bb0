//! The CLI's per-message crypto: sealing for one recipient and for a 1,000-member
//! group, opening (verify and decrypt), and verifying alone.
//! Run with `cargo bench -p fastchat-bench --bench crypto`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use fastchat_protocol::envelope::{self, Destination, GroupBinding, Header, Kind, Plaintext};
use fastchat_protocol::keys::generate_private_key;
use rsa::{RsaPrivateKey, RsaPublicKey};

/// A typical chat line.
const TEXT: &str = "Running ten minutes late, order me the usual? The table by the window.";

fn header(to: Destination) -> Header {
    let group = matches!(to, Destination::Group(_)).then(|| GroupBinding {
        id: uuid::Uuid::new_v4(),
        epoch: 7,
        head: "ab".repeat(32),
    });
    Header {
        from: "alice".into(),
        to,
        kind: Kind::Text,
        client_id: uuid::Uuid::new_v4(),
        sent_at: Some("2026-12-01T12:00:00.000Z".into()),
        group,
    }
}

fn crypto(c: &mut Criterion) {
    // Key generation is slow; a handful of distinct keys stands in for 1,000 members,
    // since each wrap costs the same whoever's key it is.
    let keys: Vec<RsaPrivateKey> = (0..4)
        .map(|_| generate_private_key().expect("generating a key"))
        .collect();
    let alice = &keys[0];
    let bob = &keys[1];
    let public = |k: &RsaPrivateKey| -> RsaPublicKey { k.to_public_key() };
    let plaintext = Plaintext::Text { text: TEXT.into() };
    let direct = header(Destination::User("bob".into()));
    let pair = vec![
        ("alice".to_owned(), public(alice)),
        ("bob".to_owned(), public(bob)),
    ];
    let members: Vec<(String, RsaPublicKey)> = (0..1000)
        .map(|i| (format!("member_{i}"), public(&keys[i % keys.len()])))
        .collect();
    let group = header(Destination::Group("crew".into()));

    let mut g = c.benchmark_group("envelope");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal for 1 recipient", |b| {
        b.iter(|| envelope::seal(&direct, &plaintext, alice, &pair).expect("seal"))
    });
    g.bench_function("open (verify and decrypt)", |b| {
        b.iter_batched(
            || envelope::seal(&direct, &plaintext, alice, &pair).expect("seal"),
            |sealed| envelope::open(&sealed, &direct, &public(alice), "bob", bob).expect("open"),
            BatchSize::SmallInput,
        )
    });
    let sealed = envelope::seal(&direct, &plaintext, alice, &pair).expect("seal");
    g.bench_function("verify", |b| {
        b.iter(|| envelope::verify(&sealed, &direct, &public(alice)).expect("verify"))
    });
    g.sample_size(10);
    g.bench_function("seal for 1,000 recipients", |b| {
        b.iter(|| envelope::seal(&group, &plaintext, alice, &members).expect("seal"))
    });
    g.finish();
}

criterion_group!(benches, crypto);
criterion_main!(benches);
