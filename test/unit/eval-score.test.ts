// Exact match as the eval scores it: the answer's bytes, then <|end|> — nothing else counts.
import { describe, expect, it } from 'vitest';
import { TOKENS } from '../../gpu-runner/eval/episodes.ts';
import { scoreAnswer } from '../../gpu-runner/eval/score.ts';

const b = (s: string) => [...Buffer.from(s)];

describe('scoreAnswer', () => {
  it('answer followed by <|end|> is an exact match', () => {
    expect(scoreAnswer([...b('123456'), TOKENS.end], b('123456'))).toEqual({
      exact: true,
      predicted: '123456',
      stop: 'end',
    });
    // what follows the <|end|> does not matter (generation is cut there)
    expect(scoreAnswer([...b('ABCDE -> 1'), TOKENS.end, 65, 66], b('ABCDE -> 1')).exact).toBe(true);
  });

  it('one wrong byte is a miss', () => {
    const s = scoreAnswer([...b('123457'), TOKENS.end], b('123456'));
    expect(s).toEqual({ exact: false, predicted: '123457', stop: 'end' });
  });

  it('a missing <|end|> is a miss, even with every answer byte right', () => {
    expect(scoreAnswer(b('123456'), b('123456'))).toMatchObject({ exact: false, stop: 'none' });
    expect(scoreAnswer([...b('123456'), 48], b('123456'))).toMatchObject({
      exact: false,
      predicted: '1234560',
    });
  });

  it('<|eos|> instead of <|end|> is a miss', () => {
    expect(scoreAnswer([...b('123456'), TOKENS.eos], b('123456'))).toMatchObject({
      exact: false,
      stop: 'eos',
    });
  });

  it('a prefix or an extension of the answer is a miss', () => {
    expect(scoreAnswer([...b('12345'), TOKENS.end], b('123456')).exact).toBe(false);
    expect(scoreAnswer([...b('1234567'), TOKENS.end], b('123456')).exact).toBe(false);
    expect(scoreAnswer([TOKENS.end], b('123456'))).toMatchObject({ exact: false, predicted: '' });
  });
});
