import * as core from '@actions/core'
import { run } from './main'
import { post } from './post'

/** action.yml runs the same file for both phases; the main phase leaves a state flag for the post phase. */
export function start(): void {
  if (core.getState('isPost') === 'true') {
    void post()
  } else {
    core.saveState('isPost', 'true')
    void run()
  }
}
