// `await using` needs Symbol.asyncDispose at run time; Node 20 before 20.4
// lacks it. Node names it Symbol.for('nodejs.asyncDispose') where it has it.
const S = Symbol as { asyncDispose?: symbol };
S.asyncDispose ??= Symbol.for('nodejs.asyncDispose');

export {};
