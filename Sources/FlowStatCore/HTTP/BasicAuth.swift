// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Foundation
import NIOConcurrencyHelpers

/// HTTP basic authentication against the web config's bcrypt hashes, with a cache so that
/// a pipeline's every request does not pay bcrypt's cost (tens of milliseconds at cost 10).
///
/// `check` answers from the cache on the event loop; what it cannot answer goes to
/// `verify`, which runs bcrypt and must run off the event loop. Successes are remembered
/// for `successLifetime`, failures only for `failureLifetime` (so a repeated wrong
/// password costs one bcrypt per window, and nothing stays denied for long). The cache is
/// keyed by the user and a 128-bit keyed hash of the password under a per-process random
/// key, so it holds no password, and it is bounded.
final class BasicAuth: Sendable {
    /// Seconds a verified (user, password) pair is let in without bcrypt.
    static let successLifetime: UInt64 = 600
    /// Seconds a refused pair is refused without bcrypt.
    static let failureLifetime: UInt64 = 10
    /// Most pairs remembered; past it expired entries go, then all failures, then all.
    static let cacheCapacity = 1_024

    /// Users and their hashes.
    let users: [String: String]
    /// A hash to check against for unknown users, so that they take as long as known ones.
    private let decoyHash: String
    private let hashKey: (UInt64, UInt64)
    private let cache = NIOLockedValueBox([CacheKey: CacheEntry]())

    private struct CacheKey: Hashable {
        var user: String
        var digest0: UInt64
        var digest1: UInt64
    }

    private struct CacheEntry {
        var allowed: Bool
        var expires: UInt64
    }

    /// Credentials taken from an `Authorization` header.
    struct Credentials: Sendable {
        var user: String
        var password: String
    }

    /// What `check` knows without running bcrypt.
    enum Decision: Sendable {
        case allowed
        case denied
        /// Not in the cache: call `verify` off the event loop.
        case verify(Credentials)
    }

    init(users: [String: String]) {
        precondition(!users.isEmpty, "BasicAuth needs at least one user")
        self.users = users
        self.decoyHash = users[users.keys.min()!]!
        var generator = SystemRandomNumberGenerator()
        self.hashKey = (generator.next(), generator.next())
    }

    /// The cached answer for an `Authorization` header value (or its absence).
    func check(authorization: String?) -> Decision {
        guard let authorization, let credentials = BasicAuth.parse(authorization) else { return .denied }
        let key = cacheKey(credentials)
        let now = SystemClock.monotonicNanoseconds() / 1_000_000_000
        let cached = cache.withLockedValue { cache in cache[key].flatMap { $0.expires > now ? $0.allowed : nil } }
        switch cached {
        case true: return .allowed
        case false: return .denied
        case nil: return .verify(credentials)
        }
    }

    /// Runs bcrypt and remembers the answer. Blocks: call it from a thread pool.
    func verify(_ credentials: Credentials) -> Bool {
        let hash = users[credentials.user]
        let matches = fs_password_matches(credentials.password, hash ?? decoyHash) == 1 && hash != nil
        let now = SystemClock.monotonicNanoseconds() / 1_000_000_000
        let entry = CacheEntry(
            allowed: matches, expires: now + (matches ? BasicAuth.successLifetime : BasicAuth.failureLifetime))
        let key = cacheKey(credentials)
        cache.withLockedValue { cache in
            if cache.count >= BasicAuth.cacheCapacity {
                cache = cache.filter { $0.value.expires > now }
                if cache.count >= BasicAuth.cacheCapacity { cache = cache.filter { $0.value.allowed } }
                if cache.count >= BasicAuth.cacheCapacity { cache.removeAll() }
            }
            cache[key] = entry
        }
        return matches
    }

    /// `Basic base64(user:password)`; the scheme is case-insensitive (RFC 7617).
    static func parse(_ header: String) -> Credentials? {
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let data = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces)),
            let text = String(data: data, encoding: .utf8),
            let colon = text.firstIndex(of: ":")
        else { return nil }
        return Credentials(user: String(text[..<colon]), password: String(text[text.index(after: colon)...]))
    }

    /// Whether `hash` looks like a bcrypt hash libxcrypt can check.
    static func isBcryptHash(_ hash: String) -> Bool {
        let bytes = Array(hash.utf8)
        guard bytes.count == 60, ["$2a$", "$2b$", "$2y$"].contains(String(hash.prefix(4))),
            bytes[6] == UInt8(ascii: "$"), let cost = Int(String(hash.dropFirst(4).prefix(2))), (4...31).contains(cost)
        else { return false }
        return true
    }

    private func cacheKey(_ credentials: Credentials) -> CacheKey {
        func digest(_ domain: UInt8) -> UInt64 {
            var hasher = Hasher()
            hasher.combine(hashKey.0)
            hasher.combine(hashKey.1)
            hasher.combine(domain)
            hasher.combine(credentials.password)
            return UInt64(bitPattern: Int64(hasher.finalize()))
        }
        return CacheKey(user: credentials.user, digest0: digest(0), digest1: digest(1))
    }
}
