// ESLint 9 flat config: typescript-eslint's type-aware recommended rules over the TypeScript
// sources (src, test, bench, examples; one tsconfig), plain recommended rules over the few
// JavaScript files (build script, container probe, the browser pages' scripts).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'frames/', '.bench/'] },
  {
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // An async function without await is how a memory implementation (and a Fastify plugin) keeps its seam's Promise contract, throws included.
      '@typescript-eslint/require-await': 'off',
      // As tsc's noUnusedParameters: a leading underscore marks a parameter kept for its position; a rest sibling omits a property.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // A let assigned once, after the closures that read it were made (parts that need each other), cannot be const.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      // Static handlers shared by every connection take their emitter (or the timer's argument) as their subject: no closure per connection.
      '@typescript-eslint/unbound-method': ['error', { ignoreStatic: true }],
      // node:test's suite and hook functions return promises that the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] }],
        },
      ],
    },
  },
  {
    files: ['scripts/**/*.js', 'deploy/**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
  },
  {
    files: ['web/**/*.js'],
    extends: [js.configs.recommended],
    languageOptions: { sourceType: 'module', globals: globals.browser },
    rules: { 'no-unused-vars': ['error', { ignoreRestSiblings: true }] }, // a rest sibling omits a property
  },
);
