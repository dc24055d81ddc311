// What the hold-for-review tests of both packages share (www/e2e/review.test.mjs
// in Chromium, node/test/review.test.mjs on SQLCipher): a stand-in scorer and
// the broken scorers whose writes must go on unscored.

/** Flags a change of a room's rate to 1,000 or more; records what it is shown
 *  in `seen`. Other collections are not scored. */
export function rateScorer(seen = []) {
  return {
    model: '5eed',
    score(input) {
      seen.push(input);
      if (input.collection !== 'rooms') return null;
      const before = input.before?.rate, after = input.after?.rate;
      if (before === after) return { score: 0, flagged: false };
      return { score: (after ?? 0) / 1000, flagged: (after ?? 0) >= 1000 };
    },
  };
}

/** Scorers that throw (with field data in the message), answer a promise or
 *  junk, and the code each write's `score_failed` audit entry must carry. */
export const BROKEN = [
  [() => { throw new Error('guest Smith'); }, 'SCORER_FAILED'],
  [async () => ({ score: 1, flagged: true }), 'SCORER_ASYNC'],
  [() => ({ score: 'high' }), 'SCORE_INVALID'],
];
